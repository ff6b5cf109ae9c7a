"""Killing a fit and resuming it from its checkpoint, through the real ``trajtok`` command on configs/clip.yaml.

From an end-of-epoch checkpoint the resumed run is bit-identical to an uninterrupted one (weights, optimizer and
LR schedule, logged metrics), with a DataLoader worker process as the configs use: everything random is seeded from
(seed, epoch, rank) at every epoch start (trajtok/seeding.py). From a mid-epoch checkpoint
Lightning 2.x restores model, optimizer, schedule and step counters but restarts the (map-style) data loader at
the beginning of the epoch, so the rest of that epoch sees other batches: it finishes, but not identically.
"""

from __future__ import annotations

import csv
import functools
import http.server
import os
import threading
from pathlib import Path

import pytest
import torch
from helpers import ROOT, callback, run_trajtok

FIT = [
    "fit", "--config", str(ROOT / "configs/clip.yaml"),
    "--data.init_args.synthetic.train=16",  # 4 steps an epoch
    "--data.init_args.synthetic.val=8",
    "--data.init_args.synthetic.test=8",
    "--data.init_args.loader.batch_size=4",
    "--data.init_args.loader.num_workers=1",  # a worker process, as the configs use: its seeds must replay too
    "--data.init_args.clip.num_frames=4",
    "--data.init_args.clip.image_size=32",
    "--model.head.init_args.depth=1",
    "--trainer.max_epochs=2",
    "--trainer.enable_progress_bar=false",
]
SAVE_AT_END = callback("faults.SaveAtEnd", path="final.pt")

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    result = run_trajtok([*FIT, SAVE_AT_END], folder, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def killed(tmp_path_factory, cache) -> Path:
    """A fit SIGKILLed before batch 2 of epoch 1, leaving the end-of-epoch-0 ``last.ckpt`` and ``mid/step6.ckpt``
    (after batch 1 of epoch 1) of an extra step-interval ModelCheckpoint."""
    folder = tmp_path_factory.mktemp("killed")
    every_6_steps = callback("lightning.pytorch.callbacks.ModelCheckpoint", dirpath="mid", filename="step{step}",
                             auto_insert_metric_name=False, every_n_train_steps=6, save_top_k=-1)
    result = run_trajtok([*FIT, every_6_steps, callback("faults.KillAt", epoch=1, batch=2)], folder, cache)
    assert result.returncode == -9, result.stderr[-3000:]
    return folder


def final(folder: Path) -> dict:
    return torch.load(folder / "final.pt", weights_only=True)


def metric_rows(log: Path, from_step: int) -> list[dict[str, str]]:
    """The CSV logger's rows from ``from_step`` on, without wall-clock columns and empty cells."""
    with open(log) as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in row.items() if v != "" and k != "train/clips_per_s"}
            for row in rows if int(row["step"]) >= from_step]


def test_resuming_from_an_epoch_end_checkpoint_replays_the_uninterrupted_run_exactly(uninterrupted, killed, tmp_path,
                                                                                    cache):
    checkpoint = killed / "runs/clip/checkpoints/last.ckpt"
    saved = torch.load(checkpoint, weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (0, 4)  # the end of epoch 0

    resumed = run_trajtok([*FIT, f"--ckpt_path={checkpoint}", SAVE_AT_END], tmp_path, cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = final(uninterrupted), final(tmp_path)
    assert (b["epoch"], b["global_step"]) == (a["epoch"], a["global_step"]) == (2, 8)
    assert b["lr"] == a["lr"]  # the schedule went on from its saved state
    assert a["state_dict"].keys() == b["state_dict"].keys()
    different = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    # The second epoch logged the same numbers: train loss, LR, validation retrieval metrics.
    rows = metric_rows(uninterrupted / "runs/clip/logs/version_0/metrics.csv", from_step=4)
    resumed_rows = metric_rows(tmp_path / "runs/clip/logs/version_0/metrics.csv", from_step=4)
    assert any("val/t2v_r5" in row for row in rows) and any("train/loss" in row for row in rows)
    assert resumed_rows == rows


def test_resuming_mid_epoch_finishes_the_run_but_not_identically(uninterrupted, killed, tmp_path, cache):
    resumed = run_trajtok([*FIT, f"--ckpt_path={killed / 'mid/step6.ckpt'}", SAVE_AT_END], tmp_path, cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "your dataloader is not resumable" in resumed.stderr  # Lightning says so itself
    a, b = final(uninterrupted), final(tmp_path)
    # What holds: the step count, the epoch count and the LR schedule.
    assert (b["epoch"], b["global_step"], b["lr"]) == (a["epoch"], a["global_step"], a["lr"])
    # What does not: batches 2-3 of epoch 1 were replaced by a restarted loader's batches 0-1. If this starts
    # failing, resuming became exact mid-epoch (a stateful loader): update docs/training.md "Resuming".
    assert any(not torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


class MakesADirectory:
    """Unpickling this runs code: ``os.mkdir(path)``."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_ckpt_path_is_read_weights_only_even_from_a_url(killed, tmp_path, cache):
    # Lightning reads an http(s) --ckpt_path with weights_only=False unless told otherwise; trajtok tells it.
    marker = tmp_path / "code_ran"
    checkpoint = torch.load(killed / "runs/clip/checkpoints/last.ckpt", weights_only=True)
    checkpoint["payload"] = MakesADirectory(str(marker))
    torch.save(checkpoint, tmp_path / "evil.ckpt")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/evil.ckpt"
    env = {"TORCH_HOME": str(tmp_path / "torch_home"), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    try:
        result = run_trajtok(["test", *FIT[1:], f"--ckpt_path={url}"], tmp_path, cache, env=env)
    finally:
        server.shutdown()
    assert result.returncode == 2
    assert "a weights-only load refuses it" in result.stderr and "--weights_only=false" in result.stderr
    assert "Traceback" not in result.stderr  # a user's checkpoint: one message
    assert not marker.exists()


def other_file_system(than: Path) -> Path | None:
    """A writable folder on another file system than ``than`` (tmpfs ``/dev/shm`` on Linux), if there is one."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != than.stat().st_dev:
        return shm
    return None


def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, cache):
    """Killed halfway through writing epoch 1's ``last.ckpt``, the run leaves epoch 0's intact, and resuming from
    it finishes. With ``$TMPDIR`` on another file system, Lightning's own (fsspec) write copies into ``last.ckpt``
    itself and leaves it truncated; ``trajtok`` writes a temporary file beside it and renames it."""
    elsewhere = other_file_system(tmp_path)
    if elsewhere is None:
        pytest.skip("no second file system for $TMPDIR")
    temporary = Path(__import__("tempfile").mkdtemp(dir=elsewhere))
    env = {"TMPDIR": str(temporary)}
    result = run_trajtok([*FIT, "--trainer.max_epochs=3", callback("faults.KillDuringCheckpointWrite", epoch=1)],
                         tmp_path, cache, env=env)
    assert result.returncode == -9, result.stderr[-3000:]
    last = tmp_path / "runs/clip/checkpoints/last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0  # the previous one, whole
    result = run_trajtok([*FIT, "--trainer.max_epochs=3", f"--ckpt_path={last}"], tmp_path, cache, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 2
    assert not list(last.parent.glob(".*.partial"))  # the killed write's partial file is all that was lost
