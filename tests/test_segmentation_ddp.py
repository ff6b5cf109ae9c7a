"""SegmentationQuality under 2-process DDP (gloo, CPU): every rank computes the numbers of the whole data set.

Its own file so that the spawned workers import only ``trajtok.segmentation``, not Lightning and the heads.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from processes import run_ranks

from trajtok.segmentation import SegmentationQuality


def quality_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    targets = torch.randint(-1, 3, (6, 20), generator=gen)
    return torch.randn(6, 20, 4, generator=gen), targets


def _quality_worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        logits, targets = quality_data()
        quality = SegmentationQuality()
        quality.update(logits[rank::2], targets[rank::2])
        torch.save(quality.compute(), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.slow
def test_quality_is_summed_across_processes(tmp_path):
    run_ranks(_quality_worker, str(tmp_path))
    single = SegmentationQuality()
    single.update(*quality_data())
    expected = single.compute()
    for rank in range(2):
        synced = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert {k: v.item() for k, v in synced.items()} == pytest.approx({k: v.item() for k, v in expected.items()})
