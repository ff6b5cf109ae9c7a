"""What the benchmarks rely on: counted FLOPs against a hand count, the compared models, and reading a run's
numbers back from its metrics.csv."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from builders import quiet_trainer
from faults import SquareHead, TinyTokenizer
from helpers import CONFIGS, SMALL_DATA
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from benchmarks.common import (
    KINDS,
    RETRIEVAL,
    SCALES,
    SEGMENTATION,
    LogTrainableParams,
    build_video_model,
    logged_metrics,
    metrics_files,
    new_metrics_file,
    stage_metrics,
    tubelet_count,
)
from trajtok.cli import TrajTokCLI
from trajtok.flops import count_flops
from trajtok.module import TrajTokModule


def vit_flops(tokens: int, width: int, depth: int) -> int:
    """A ViT encoder over ``tokens`` (+1 CLS): 12 width^2 weights per token per block, plus the attention."""
    length = tokens + 1
    return depth * (2 * length * 12 * width**2 + 4 * length**2 * width)


@pytest.mark.parametrize("scale, frames", [("vit-b", 8), ("vit-l", 32), ("cpu", 16)])
def test_vit3d_flops_match_the_hand_count(scale, frames):
    s = SCALES[scale]
    model = build_video_model("vit3d", scale, frames, device="meta")
    video = torch.empty(1, frames, 3, s["pixels"], s["pixels"], device="meta")
    tokens = tubelet_count(scale, frames)
    patch = model.tokenizer.embed.patch_size
    embed = 2 * tokens * (2 * patch * patch * 3) * s["width"]
    projection = 2 * s["width"] * 128  # the CLS embedding to the shared space
    expected = embed + vit_flops(tokens, s["width"], s["depth"]) + projection
    assert count_flops(lambda: model(video)) == expected
    if (scale, frames) == ("vit-b", 8):
        assert 150e9 < expected < 170e9  # the hand estimate: about 160 GFLOPs


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_at_every_scale_on_meta(kind):
    for scale in SCALES:
        model = build_video_model(kind, scale, 8, device="meta")
        assert sum(p.numel() for p in model.parameters()) > 0
    out = build_video_model(kind, "cpu", 8)(torch.randn(2, 8, 3, 64, 64))
    assert out.shape == (2, 128) and torch.isfinite(out).all()


@pytest.mark.parametrize("scale, frames, blocks", [("vit-b", 8, 6), ("vit-b", 32, 6), ("vit-l", 16, 12)])
def test_tome_merges_the_tubelets_to_a_quarter_in_half_the_video_transformer(scale, frames, blocks):
    model = build_video_model("tome", scale, frames, device="meta")
    tubelets = tubelet_count(scale, frames)
    tokens = model.tokenizer(torch.empty(1, frames, 3, 224, 224, device="meta"))
    assert tokens.tokens.shape[1:] == (tubelets // 4, SCALES[scale]["width"])
    assert len(model.tokenizer.blocks) == blocks and len(model.head.transformer.blocks) == blocks


def test_logged_metrics_read_a_test_run_back_from_its_csv_logger(tmp_path):
    """What ``trajtok test`` leaves in metrics.csv, written by Lightning's own CSVLogger: the epoch-end metrics in
    one row, and a second row that leaves those columns empty."""
    retrieval = dict(zip(RETRIEVAL, (3.12, 11.72, 19.53, 26.0, 30.5, 2.5, 10.0, 20.0, 24.0, 29.25)))
    segmentation = {"seg_miou": 0.4375, "seg_found": 0.5, "seg_pred_trajectories": 6.25, "seg_target_trajectories": 5.0}
    logger = CSVLogger(tmp_path / "runs/clip", name="logs", version="test")
    logger.log_metrics({"test/loss": 2.0, "test/tokens": 11.6}, step=0)
    logger.log_metrics({f"test/{k}": v for k, v in {**retrieval, **segmentation}.items()}, step=0)
    logger.log_metrics({"test/loss": 1.5}, step=1)  # a later value of the same column wins
    logger.save()

    logged = logged_metrics(tmp_path / "runs/clip/logs/test/metrics.csv")
    assert logged["test/loss"] == 1.5 and logged["test/tokens"] == 11.6
    assert stage_metrics(logged, RETRIEVAL) == retrieval
    # seg_background_iou is logged only for clips with background trajectories: optional, absent here.
    assert stage_metrics(logged, SEGMENTATION, optional=("seg_background_iou",)) == segmentation
    with pytest.raises(ValueError, match="not logged: test/top1, test/top5"):
        stage_metrics(logged, ("tokens", "top1", "top5"))


def test_log_trainable_params_counts_only_what_trains(tmp_path):
    torch.manual_seed(0)
    module = TrajTokModule(TinyTokenizer(), SquareHead(), warmup_steps=0)
    module.tokenizer.requires_grad_(False)  # as a frozen feature model: 48 x 32 + 32 weights left out
    clips = DataLoader([{"video": torch.randn(2, 3, 4, 4), "index": i} for i in range(4)], batch_size=2)
    trainer = quiet_trainer(max_steps=1, logger=CSVLogger(tmp_path / "runs/tiny", name="logs", version="fit"),
                            callbacks=[LogTrainableParams()])
    trainer.fit(module, clips)
    assert logged_metrics(tmp_path / "runs/tiny/logs/fit/metrics.csv")["trainable_params"] == 8 + 1  # the head's Linear(8, 1)


def untrained_test_run(config: str, folder: Path) -> dict[str, float]:
    """``trajtok test`` of ``configs/<config>.yaml``'s untrained weights on 8 synthetic test clips, in this process,
    in a run folder named as the benchmarks name it; what the metrics.csv it wrote holds."""
    small = [*SMALL_DATA, "--data.init_args.clip.num_frames=4", "--data.init_args.clip.image_size=32",
             "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    before = metrics_files(folder)
    TrajTokCLI(args=["test", "--config", str(CONFIGS / f"{config}.yaml"), *small,
                     f"--trainer.default_root_dir={folder / config}", "--allow_untrained=true"])
    return logged_metrics(new_metrics_file(folder, before))


def test_a_test_run_of_the_clip_config_logs_the_retrieval_metrics(cli_in_tmp, cache, monkeypatch):
    monkeypatch.setenv("TRAJTOK_CACHE", str(cache))
    metrics = stage_metrics(untrained_test_run("clip", cli_in_tmp), ("tokens", *RETRIEVAL))
    # 8 clips of two captions each: recalls are whole numbers of 16 text queries and of 8 video queries.
    for direction, queries in (("t2v", 16), ("v2t", 8)):
        for k in (1, 5, 10):
            hits = metrics[f"{direction}_r{k}"] * queries / 100
            assert 0 <= hits <= queries and hits == pytest.approx(round(hits), abs=1e-4), (direction, k, hits)
        assert 1 <= metrics[f"{direction}_medr"] <= 16 and 1 <= metrics[f"{direction}_meanr"] <= 16  # ranks
    assert 1 <= metrics["tokens"] <= 64


def test_a_test_run_of_the_segmenter_config_logs_the_segmentation_quality(cli_in_tmp, cache, monkeypatch):
    monkeypatch.setenv("TRAJTOK_CACHE", str(cache))
    metrics = stage_metrics(untrained_test_run("segmenter", cli_in_tmp), SEGMENTATION)
    assert 0 < metrics["seg_miou"] <= 1 and 0 <= metrics["seg_found"] <= 1  # fractions, not percent
    assert metrics["seg_pred_trajectories"] >= 1 and metrics["seg_target_trajectories"] >= 1
