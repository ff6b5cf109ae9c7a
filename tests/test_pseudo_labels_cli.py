"""``trajtok pseudo-label`` run as a user runs it, with the oracle parts (``pseudo_label_oracles``) on the synthetic
set: the labelled folder trains the segmenter through ``trajtok fit`` with no conversion, and two DDP processes
label each video exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import ROOT, run_trajtok

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]


def label_args(videos: int) -> list[str]:
    return [
        "pseudo-label", "--config", str(ROOT / "configs/pseudo_labels.yaml"),
        "--model.segmenter=pseudo_label_oracles.OracleSegmenter",
        "--model.propagator=pseudo_label_oracles.OraclePropagator",
        "--model.chunker=trajtok.pseudo_labels.FixedChunks",
        f"--data.source.init_args.synthetic.train={videos}",
        "--data.source.init_args.synthetic.val=4",
        "--data.source.init_args.synthetic.test=4",
        "--data.out_dir=labels", "--data.num_workers=0",
        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
    ]


def stats_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("stats.rank*.jsonl")) for line in path.read_text().splitlines()]


def test_a_labelled_folder_trains_the_segmenter_through_the_cli(tmp_path, cache):
    result = run_trajtok(label_args(8), tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "8 of 8 videos labelled" in result.stderr + result.stdout
    annotations = "labels/pseudo_labels.jsonl"
    fit = run_trajtok(["fit", "--config", str(ROOT / "configs/segmenter.yaml"),
                       f"--data.init_args.train_annotations={annotations}",
                       f"--data.init_args.val_annotations={annotations}",
                       "--data.init_args.loader.batch_size=4", "--data.init_args.loader.num_workers=0",
                       "--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"],
                      tmp_path, cache)
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoint = torch.load(tmp_path / "runs/segmenter/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2
    metrics = (tmp_path / "runs/segmenter/logs/version_0/metrics.csv").read_text()
    assert "val/seg_miou" in metrics and "val/seg_target_trajectories" in metrics
    again = run_trajtok(label_args(8), tmp_path, cache)  # everything is done: a rerun labels nothing
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(stats_rows(tmp_path / "labels")) == 8


@pytest.mark.distributed
def test_two_ddp_processes_label_each_video_exactly_once(tmp_path, cache):
    ddp = ["--trainer.devices=2", "--trainer.strategy=ddp"]
    result = run_trajtok([*label_args(5), *ddp], tmp_path, cache)  # 5 videos: Lightning's sampler would pad one
    assert result.returncode == 0, result.stderr[-3000:]
    rows = stats_rows(tmp_path / "labels")
    assert sorted(r["name"] for r in rows) == [f"videos/train_0000{i}" for i in range(5)]
    assert {p.name for p in (tmp_path / "labels").glob("stats.rank*.jsonl")} == {"stats.rank0.jsonl", "stats.rank1.jsonl"}
    assert len(list((tmp_path / "labels/videos").glob("*_mask.npz"))) == 5
    assert len((tmp_path / "labels/pseudo_labels.jsonl").read_text().splitlines()) == 5
