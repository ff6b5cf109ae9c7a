"""BadSampleReport's gathering under 2-process DDP (gloo, CPU): every rank ends with the union of all ranks'
skip reports, each bad sample once, so every rank logs the same global count.

Its own file so that the spawned workers import only ``trajtok.callbacks``, not the datamodules and heads.
"""

from __future__ import annotations

import json

import pytest
import torch.distributed as dist
from processes import run_ranks

from trajtok.callbacks import gather_skipped


def rank_reports(rank: int) -> dict:
    # Sample 7 is met on both ranks (DistributedSampler pads by repeating samples, and a batch's holes may fall on either).
    indices = {0: [3, 7], 1: [7, 11, 12]}[rank]
    return {(0, i): {"index": i, "path": f"/d/{i}.mp4", "reason": "file not found", "origin": None} for i in indices}


def _gather_worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        merged = gather_skipped(rank_reports(rank))
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump(sorted((list(k), v) for k, v in merged.items()), f)
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.slow
def test_reports_are_gathered_from_all_ranks(tmp_path):
    assert gather_skipped(rank_reports(0)) == rank_reports(0)  # no process group: this process's own
    run_ranks(_gather_worker, str(tmp_path))
    expected = sorted([[0, i], r] for (_, i), r in {**rank_reports(0), **rank_reports(1)}.items())
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected
