"""Joint image + video training: one-frame clips through TrajTok and ClipHead, the joint loader, the per-source
losses of the module, and a CPU fit of configs/clip_images.yaml logging both loss curves."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pytest
import torch
from builders import tiny_module, tiny_tokenizer
from helpers import CONFIGS, run_trajtok

from datamodules import (
    ImageTextDataModule,
    JointDataModule,
    LoaderOptions,
    SyntheticOptions,
    VideoTextDataModule,
)
from heads.contrastive import clip_loss
from trajtok.callbacks import BadSampleReport

SMALL = {"synthetic.train": 16, "synthetic.val": 8, "synthetic.test": 8, "loader.num_workers": 0}


#: The tiny tokenizer with one encoder layer, TrajTok's default assignment dim and a four-stage pyramid.
TOKENIZER = {"depth": 1, "assign_dim": 64, "widths": (8, 16, 24, 32)}


def joint(cache: Path, mode: str = "max_size_cycle") -> JointDataModule:
    synthetic = SyntheticOptions(cache_dir=str(cache), train=16, val=8, test=8)
    videos = VideoTextDataModule(loader=LoaderOptions(batch_size=4), load_pseudo_labels=False, synthetic=synthetic)
    images = ImageTextDataModule(loader=LoaderOptions(batch_size=8), synthetic=dataclasses.replace(synthetic, seed=1))
    return JointDataModule(videos, images, mode=mode)


def test_one_frame_clips_go_through_the_tokenizer_and_the_clip_head():
    torch.manual_seed(0)
    module = tiny_module(tiny_tokenizer(**TOKENIZER))
    tokens = module(torch.randn(6, 1, 3, 64, 64))
    assert tokens.tokens.shape == (6, 8, 32) and tokens.labels.shape == (6, 1, 16, 16)
    assert tokens.grid == (1, 16, 16) and (tokens.num_valid >= 1).all()
    loss = module.head.losses(tokens, {"text": [f"caption {i}" for i in range(6)]})["contrastive"]
    loss.backward()
    assert math.isfinite(loss.item())
    assert module.tokenizer.pixel_encoder.downsamples[0][0].weight.grad.abs().sum() > 0
    module.eval()
    with torch.no_grad():
        module.head.update_metrics(module(torch.randn(6, 1, 3, 64, 64)),
                                   {"captions": [[f"c{i}"] for i in range(6)], "index": torch.arange(6)})
    assert 0 <= module.head.compute_metrics()["t2v_r1"] <= 100


def test_joint_loader_gives_both_sources_every_step_and_evaluates_on_videos(cache):
    data = joint(cache)
    data.prepare_data()
    data.setup("fit")
    loader = data.train_dataloader()
    steps = list(loader)
    assert len(steps) == len(loader) == 4  # max(16 videos / 4, 16 images / 8): the images cycle
    batch = steps[0][0]
    assert set(batch) == {"video", "image"}
    assert batch["video"]["video"].shape == (4, 8, 3, 64, 64) and len(batch["video"]["text"]) == 4
    assert batch["image"]["video"].shape == (8, 1, 3, 64, 64) and len(batch["image"]["captions"]) == 8
    assert len(list(joint(cache, mode="min_size").train_dataloader())) == 2
    val = data.val_dataloader()
    assert next(iter(val))["video"].shape[1] == 8 and data.test_dataloader().dataset is data.videos.datasets["test"]
    assert data.clip.num_frames == 8  # what visualize reads off the datamodule is the videos'


def test_bad_joint_options_are_named():
    videos = VideoTextDataModule()
    with pytest.raises(ValueError, match="mode must be"):
        JointDataModule(videos, ImageTextDataModule(), mode="sequential")
    with pytest.raises(TypeError, match="images must be a LightningDataModule"):
        JointDataModule(videos, "images.jsonl")


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_training_step_sums_the_sources_as_separate_contrastive_problems():
    torch.manual_seed(0)
    module = tiny_module(tiny_tokenizer(**TOKENIZER))
    video = {"video": torch.randn(4, 8, 3, 64, 64), "text": [f"video {i}" for i in range(4)]}
    image = {"video": torch.randn(6, 1, 3, 64, 64), "text": [f"image {i}" for i in range(6)]}
    total = module.training_step({"video": video, "image": image}, 0)
    head = module.head
    separate = [clip_loss(head.encode_video(module(b["video"])), head.encode_text(b["text"]), head.logit_scale())
                for b in (video, image)]
    assert total.item() == pytest.approx(sum(s.item() for s in separate), rel=1e-5)
    assert module.training_step(video, 0).item() == pytest.approx(separate[0].item(), rel=1e-5)


def test_skipped_samples_of_the_two_sources_are_counted_apart():
    report = BadSampleReport()
    skipped = [{"index": 3, "path": "x", "reason": "bad", "origin": None}]
    report._collect("train", {"video": {"skipped": skipped}, "image": {"skipped": skipped}}, 0)
    assert len(report._epoch["train"]) == 2


@pytest.mark.subprocess
@pytest.mark.slow
def test_fit_of_clip_images_logs_both_loss_curves_and_tests_on_videos(tmp_path, cache):
    small = [f"--data.init_args.{part}.init_args.{k}={v}" for part in ("videos", "images") for k, v in SMALL.items()]
    small += ["--data.init_args.videos.init_args.loader.batch_size=4", "--data.init_args.images.init_args.loader.batch_size=8"]
    config = ["--config", str(CONFIGS / "clip_images.yaml"), *small]
    fit = run_trajtok(["fit", *config, "--trainer.max_steps=4", "--trainer.max_epochs=1", "--trainer.log_every_n_steps=1"],
                      tmp_path, cache)
    assert fit.returncode == 0, fit.stderr[-3000:]
    with open(tmp_path / "runs/clip_images/logs/version_0/metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(rows) == 4
    for row in rows:
        video, image = float(row["train/loss_video"]), float(row["train/loss_image"])
        assert math.isfinite(video) and math.isfinite(image)
        assert float(row["train/loss"]) == pytest.approx(video + image, rel=1e-4)
        assert float(row["train/tokens_image"]) >= 1
    test = run_trajtok(["test", *config, "--ckpt_path=runs/clip_images/checkpoints/last.ckpt"], tmp_path, cache)
    assert test.returncode == 0, test.stderr[-3000:]
    assert "Retrieval (test)" in test.stdout + test.stderr
