"""What test modules share besides fixtures (those are in ``tests/conftest.py``): the checkout's paths, the optional
real clips, and the ``trajtok`` command run as a user runs it, in a subprocess. ``from helpers import ...`` works
because ``tests/support`` is on pytest's ``pythonpath`` (pyproject.toml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
#: The test-support modules (this one, ``faults``, ``pseudo_label_oracles``, ...), not collected by pytest.
SUPPORT = TESTS / "support"
CONFIGS = ROOT / "configs"
TRAJTOK = str(Path(sys.executable).with_name("trajtok"))

#: The shared data beside the checkout (``../shared``; never part of the repository): tests that read it are marked
#: ``shared_data("<path in it>")`` and skipped, naming the missing folder, where it is absent (``tests/conftest.py``).
SHARED = ROOT.parent / "shared"
#: 24 real MSR-VTT clips in the shared data.
MSRVTT24 = SHARED / "data" / "msrvtt24"
needs_msrvtt24 = pytest.mark.shared_data(str(MSRVTT24.relative_to(SHARED)))

#: The configs' synthetic video-text data at its smallest useful size: 16 / 8 / 8 clips, batches of 4, no workers.
SMALL_DATA = [
    "--data.init_args.synthetic.train=16",
    "--data.init_args.synthetic.val=8",
    "--data.init_args.synthetic.test=8",
    "--data.init_args.loader.batch_size=4",
    "--data.init_args.loader.num_workers=0",
]


def python_path(*folders: Path) -> str:
    """A ``PYTHONPATH`` for a child process of a test: ``folders``, then ``SUPPORT`` (so a child can import
    ``faults.KillAt`` or ``pseudo_label_oracles.HalvesSegmenter`` whatever ``folders`` are), then the inherited one
    (which may point at a worktree's code)."""
    return os.pathsep.join(filter(None, [*map(str, folders), str(SUPPORT), os.environ.get("PYTHONPATH")]))


def run_trajtok(args: list[str], cwd: Path, cache: Path, timeout: int = 300,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``trajtok ARGS`` in ``cwd``, offline, with the synthetic data cached in ``cache``, ``tests/support/faults.py``
    importable (``callback("faults.KillAt", epoch=1)``) and the test modules too (a test's own child-side callback,
    ``callback("test_pseudo_labels_resume.KillWhilePainting", sheet=2)``); ``env`` adds to or overrides the
    environment.

    One OpenMP thread per process: on a busy 2-core machine, threads beyond the cores spin against other jobs and
    every step stalls on a descheduled thread; DDP runs two processes anyway."""
    env = {**os.environ, "TRAJTOK_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": python_path(TESTS),
           "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([TRAJTOK, *args], check=False, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def callback(class_path: str, **init_args: Any) -> str:
    """A command-line option appending a callback to the config's: ``--trainer.callbacks+={...}``."""
    return "--trainer.callbacks+=" + json.dumps({"class_path": class_path, "init_args": init_args})
