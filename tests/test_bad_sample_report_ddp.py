"""BadSampleReport's gathering under 2-process DDP (gloo, CPU): every rank ends with the union of all ranks'
skip reports, each bad sample once, so every rank logs the same global count.

Its own file so that the spawned workers import only ``trajtok.callbacks``, not the datamodules and heads.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from trajtok.callbacks import gather_skipped


def rank_reports(rank: int) -> dict:
    # Sample 7 is met on both ranks (DistributedSampler pads by repeating samples, and stand-ins overlap).
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


def test_reports_are_gathered_from_all_ranks(tmp_path):
    assert gather_skipped(rank_reports(0)) == rank_reports(0)  # no process group: this process's own
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.start_processes(_gather_worker, args=(port, str(tmp_path)), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 120  # fail rather than hang if a collective deadlocks
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("workers did not finish in 120 s")
    expected = sorted([[0, i], r] for (_, i), r in {**rank_reports(0), **rank_reports(1)}.items())
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected
