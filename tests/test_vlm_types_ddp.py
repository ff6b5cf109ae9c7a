"""TypedAccuracy under 2-process DDP (gloo, CPU): every rank computes the per-type scores of the whole data set, each
question once although the sampler repeats one to even out the ranks.

Its own file so that the spawned workers import the metric, not Lightning and the data."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from processes import run_ranks

from heads.metrics import TypedAccuracy

TYPES = ("count", "first", "camera")


def questions() -> tuple[torch.Tensor, ...]:
    """Seven questions: index, type (-1: none), whether the model is right, whether the prior is (NaN: unknown)."""
    index = torch.arange(7)
    kind = torch.tensor([0, 1, 0, 2, -1, 1, 0])
    correct = torch.tensor([True, False, True, True, False, True, False])
    prior = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, float("nan"), 1.0])
    return index, kind, correct, prior


def shard(rank: int) -> list[int]:
    """What a DistributedSampler gives two ranks of seven samples: every other one, the first repeated at the end."""
    return [0, 2, 4, 6] if rank == 0 else [1, 3, 5, 0]


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        metric = TypedAccuracy(TYPES)
        mine = shard(rank)
        for half in (mine[:2], mine[2:]):  # two batches per rank
            metric.update(*(t[half] for t in questions()))
        torch.save(metric.compute(), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_count_what_one_counts(tmp_path):
    run_ranks(_worker, str(tmp_path))
    single = TypedAccuracy(TYPES)
    single.update(*questions())
    expected = {k: float(v) for k, v in single.compute().items()}
    # By hand: count 0, 2, 6 (right twice; prior right twice), first 1, 5 (once; prior 0 of 1 known), camera 3.
    assert expected == pytest.approx({"mc_accuracy_count": 200 / 3, "prior_accuracy_count": 200 / 3,
                                      "mc_accuracy_first": 50.0, "prior_accuracy_first": 0.0,
                                      "mc_accuracy_camera": 100.0, "prior_accuracy_camera": 100.0,
                                      "prior_accuracy": 400 / 6})
    for rank in range(2):
        synced = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert {k: float(v) for k, v in synced.items()} == pytest.approx(expected)
