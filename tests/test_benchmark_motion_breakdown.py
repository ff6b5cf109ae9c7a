"""``benchmarks.motion_breakdown.summarise``: the recall of a model's caption ranks on the motion test set, overall
beside the looks-only oracle, where its top-1 mistakes lie, and per phenomenon the captions tell."""

from __future__ import annotations

import math

import torch

from benchmarks.motion_breakdown import PHENOMENA, summarise
from datamodules.synthetic import SyntheticConfig
from datamodules.synthetic_motion import expected_recall, looks_key, plan_split

CFG = SyntheticConfig(scenario="motion", test=60, frame_size=64, num_frames=16)


def ranked(plan, rank_of, top1_of):
    """Caption ranks as ``caption_ranks`` returns them, two captions per clip."""
    text_index = [i for i in range(len(plan)) for _ in range(2)]
    ranks = torch.tensor([[rank_of(i), top1_of(i)] for i in text_index])
    return ranks, text_index, [clip.key for clip in plan]


def test_a_model_that_is_always_right_scores_100_and_the_oracle_is_the_looks_floor():
    plan = plan_split("test", CFG.test, CFG)
    rows = summarise(*ranked(plan, lambda i: 0, lambda i: i), plan, (6, 16))
    everything = rows[0]
    assert (everything["captions"], everything["count"]) == ("all", 2 * len(plan))
    assert everything["t2v_r1_pct"] == everything["t2v_r10_pct"] == 100.0
    assert math.isnan(everything["top1_mistakes_in_own_group_pct"])  # no mistakes to place
    oracle = expected_recall([looks_key(c) for c in plan])
    assert everything["looks_oracle_r1_pct"] == round(oracle[1], 2) < 50.0
    assert [row["captions"] for row in rows[1:]] == list(PHENOMENA)
    assert rows[1]["count"] == 2 * sum(any(c.facts.places) for c in plan)


def test_mistakes_are_placed_in_the_own_group_or_another():
    plan = plan_split("test", CFG.test, CFG)
    groups = [c.group for c in plan]
    mate = [next(j for j, g in enumerate(groups) if g == groups[i] and j != i) for i in range(len(plan))]
    other = [next(j for j, g in enumerate(groups) if g != groups[i]) for i in range(len(plan))]
    # Even clips: a group-mate ranked first (rank 1); odd clips: another group's clip (rank 7).
    rows = summarise(*ranked(plan, lambda i: 1 if i % 2 == 0 else 7,
                             lambda i: mate[i] if i % 2 == 0 else other[i]), plan, (6, 16))
    everything = rows[0]
    assert everything["t2v_r1_pct"] == 0.0
    assert everything["t2v_r5_pct"] == round(100.0 * sum(i % 2 == 0 for i in range(len(plan))) / len(plan), 2)
    assert everything["t2v_r10_pct"] == 100.0
    assert everything["top1_mistakes_in_own_group_pct"] == round(everything["t2v_r5_pct"], 1)
