"""Tar shards through the commands a user runs, in child processes: ``trajtok fit`` with ``on_bad_video: raise`` and
DataLoader workers stops with one line and exit status 2, as without workers; ``python -m datamodules.shards`` writes
shards that other users can read, under the umask as any new file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from helpers import CONFIGS, ROOT, python_path, run_trajtok

from datamodules.options import ClipOptions
from datamodules.shards import ShardedVideoTextDataset, write_shards
from datamodules.synthetic import write_mp4
from datamodules.video import VideoDecodeError

pytestmark = pytest.mark.subprocess


def test_raise_with_workers_is_one_line_and_exit_status_2(tmp_path, cache):
    frames = np.stack([np.full((16, 16, 3), 40 * t, np.uint8) for t in range(4)])
    write_mp4(str(tmp_path / "good.mp4"), frames, fps=4)
    (tmp_path / "broken.mp4").write_bytes(b"\x17" * 500)
    entries = [(f"k{i}", str(tmp_path / ("broken.mp4" if i == 3 else "good.mp4")), f"clip {i}") for i in range(8)]
    shards = write_shards(entries, str(tmp_path / "train-%02d.tar"), samples_per_shard=2)
    with pytest.raises(VideoDecodeError) as without_workers:  # what the dataset raises in the main process
        list(ShardedVideoTextDataset(shards[1], clip=ClipOptions(num_frames=2, image_size=32), on_bad_video="raise"))
    result = run_trajtok([
        "fit", "--config", str(CONFIGS / "clip.yaml"), "--data", "datamodules.ShardDataModule",
        f"--data.init_args.train_shards={tmp_path}/train-{{00..03}}.tar", "--data.init_args.on_bad_video=raise",
        "--data.init_args.loader.num_workers=2", "--data.init_args.loader.batch_size=2",
        "--data.init_args.clip.num_frames=2", "--data.init_args.clip.image_size=32", "--model.head.init_args.depth=1",
        "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    ], tmp_path, cache)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"trajtok fit: error: {without_workers.value}\n(TRAJTOK_TRACEBACK=1 shows the traceback)" in result.stderr
    assert f"{shards[1]}:k3.mp4: cannot open" in result.stderr
    assert "Traceback" not in result.stderr and "DataLoader worker" not in result.stderr


def test_written_shards_follow_the_umask_as_any_new_file(tmp_path):
    write_mp4(str(tmp_path / "v.mp4"), np.zeros((2, 16, 16, 3), np.uint8), fps=2)
    (tmp_path / "ann.jsonl").write_text('{"video": "v.mp4", "caption": "a"}\n' * 3, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "datamodules.shards", "--annotations", str(tmp_path / "ann.jsonl"),
                    "--out", str(tmp_path / "out" / "s-%02d.tar"), "--per-shard", "2"], check=True, cwd=tmp_path,
                   umask=0o022, env={**os.environ, "PYTHONPATH": python_path(ROOT), "OMP_NUM_THREADS": "1"},
                   capture_output=True)
    modes = [stat.S_IMODE(p.stat().st_mode) for p in sorted((tmp_path / "out").iterdir())]
    assert modes == [0o644, 0o644]  # readable by the cluster's other users, as a file the shell writes
    previous = os.umask(0o027)  # a stricter umask is kept too (in this process: a second child costs seconds)
    try:
        paths = write_shards([("k", str(tmp_path / "v.mp4"), "a")], str(tmp_path / "strict-%02d.tar"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(paths[0]).st_mode) == 0o640
