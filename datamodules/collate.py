"""Collate functions: samples into the batch of the data contract (see ``datamodules``).

Every batch carries the skip reports of its samples (``skipped``), and a collate function wrapped in
``drops_skipped`` leaves the holes of skipped samples out (``datamodules.bad_samples``). The pieces shared by
the video-text, classification, QA and image batches live here; ``collate_video_text`` also serves images
and tar shards, whose samples are video-text ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

from datamodules.bad_samples import HOLE


def collate_pseudo_labels(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """``mask`` uint8 ``(B, T, S, S)``, ``graph`` long ``(B, M, T)`` and ``stuff`` bool ``(B, M)`` of samples
    that carry them (else nothing); trajectory graphs of different lengths are padded with absent (0) rows."""
    if "mask" not in samples[0]:
        return {}
    return {
        "mask": torch.stack([s["mask"] for s in samples]),
        "graph": pad_sequence([s["graph"].long() for s in samples], batch_first=True, padding_value=0),
        "stuff": pad_sequence([s.get("stuff", torch.zeros(len(s["graph"]), dtype=torch.bool)) for s in samples],
                              batch_first=True, padding_value=False),
    }


def collate_skipped(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The skip reports of all samples (see ``RecordDataset``), as one list: the batch's ``skipped``. A bad
    sample may be reported by several batches; ``BadSampleReport`` counts it once per epoch."""
    return [report for s in samples for report in s.get("skipped", ())]


def drops_skipped(collate: Callable[[list[dict[str, Any]]], dict[str, Any]]):
    """``collate`` over the usable samples only: the holes of skipped samples (``RecordDataset``) are left out
    and the batch shrinks; their reports go in ``skipped``. A batch whose samples were all skipped is
    ``{"skipped": reports}`` alone, with no ``video``: ``TrajTokModule`` skips it (and counts it)."""

    @functools.wraps(collate)
    def collate_usable(samples: list[dict[str, Any]]) -> dict[str, Any]:
        usable = [s for s in samples if not s.get(HOLE)]
        reports = collate_skipped(samples)
        return {**collate(usable), "skipped": reports} if usable else {"skipped": reports}

    return collate_usable


@drops_skipped
def collate_video_text(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into the batch of the data contract (see ``datamodules``); trajectory graphs of
    different lengths are padded with absent (0) rows."""
    return {
        "video": torch.stack([s["video"] for s in samples]),
        "text": [s["text"] for s in samples],
        "captions": [s["captions"] for s in samples],
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "skipped": collate_skipped(samples),
        **collate_pseudo_labels(samples),
    }
