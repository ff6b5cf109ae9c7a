"""A training batch whose samples were all skipped as unusable (``on_bad_video: skip``, the default) through the real
``trajtok fit`` of ``configs/clip.yaml``: the module skips the step, and no callback or logger of the config reads the
batch's missing ``video``; the skipped samples are counted."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import CONFIGS

from datamodules.synthetic import write_mp4
from trajtok.cli import TrajTokCLI

pytestmark = pytest.mark.usefixtures("cli_in_tmp")


def test_a_batch_of_broken_clips_is_skipped_and_training_goes_on(tmp_path):
    # 1 good clip and 7 broken ones in batches of 4: one batch holds broken clips only, whatever the shuffle.
    frames = np.stack([np.full((16, 16, 3), 40 * t, np.uint8) for t in range(4)])
    write_mp4(str(tmp_path / "good.mp4"), frames, fps=4)
    (tmp_path / "broken.mp4").write_bytes(b"\x17" * 500)
    videos = ["good.mp4"] + ["broken.mp4"] * 7
    (tmp_path / "train.jsonl").write_text("".join(f'{{"video": "{v}", "caption": "clip {i}"}}\n'
                                                  for i, v in enumerate(videos)), encoding="utf-8")
    cli = TrajTokCLI(args=[
        "fit", "--config", str(CONFIGS / "clip.yaml"), "--data.init_args.train_annotations=train.jsonl",
        "--data.init_args.clip.num_frames=2", "--data.init_args.clip.image_size=32",
        "--data.init_args.loader.batch_size=4", "--data.init_args.loader.num_workers=0", "--trainer.max_epochs=1",
        "--model.head.init_args.depth=1", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    ])
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.state.finished
    assert metrics["train/empty_batches"].item() == 1 and metrics["train/skipped_samples"].item() == 7
    assert "train/clips_per_s" in metrics  # ClipThroughput (in the config) took the empty batch as no clips
