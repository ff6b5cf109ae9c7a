"""Running a test's worker function in several processes (gloo process groups on CPU); not collected."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now (for ``MASTER_PORT``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(worker: Callable[..., Any], *args: Any, nprocs: int = 2, start_method: str = "spawn",
              timeout: float = 120.0) -> None:
    """``worker(rank, port, *args)`` in ``nprocs`` processes; the test fails, rather than hanging the suite, if a
    collective deadlocks past ``timeout`` seconds, and fails with the worker's error if one raises."""
    ctx = mp.start_processes(worker, args=(free_port(), *args), nprocs=nprocs, join=False,
                             start_method=start_method)
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"{nprocs} processes of {worker.__name__} did not finish in {timeout:.0f} s")
