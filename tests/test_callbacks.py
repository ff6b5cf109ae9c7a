"""Training-time reporting callbacks and loggers, inside a real Lightning fit."""

from __future__ import annotations

import importlib.util

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from trajtok.callbacks import ClipThroughput, OptionalTensorBoard, batch_clips


class Regression(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch["video"].flatten(1)).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader() -> DataLoader:
    clips = [{"video": torch.randn(1, 1, 2, 2)} for _ in range(12)]
    return DataLoader(clips, batch_size=3)


def test_throughput_is_logged_to_the_progress_bar(quiet_trainer):
    throughput = ClipThroughput(window=2)
    trainer = quiet_trainer(max_steps=4, callbacks=[throughput])
    trainer.fit(Regression(), loader())
    assert trainer.progress_bar_metrics["train/clips_per_s"] > 0
    assert sum(throughput._clips) == 2 * 3  # the window: the last 2 steps of 3 clips
    with pytest.raises(ValueError, match="window"):
        ClipThroughput(window=0)


def test_throughput_counts_a_batch_of_skipped_samples_as_no_clips(quiet_trainer):
    # A batch whose samples were all skipped holds only their reports (datamodules.collate.drops_skipped).
    skipped = {"skipped": [{"index": 3, "path": "a.mp4", "reason": "file not found", "origin": None}]}

    class SkipsEmpty(Regression):
        def training_step(self, batch, batch_idx):
            return None if "video" not in batch else super().training_step(batch, batch_idx)

    batches = [{"video": torch.randn(3, 1, 1, 2, 2)}, skipped, {"video": torch.randn(2, 1, 1, 2, 2)}]
    throughput = ClipThroughput(window=5)
    trainer = quiet_trainer(max_epochs=1, callbacks=[throughput])
    trainer.fit(SkipsEmpty(), DataLoader(batches, batch_size=None))
    assert throughput._clips == [3, 0, 2]
    assert batch_clips(skipped) == 0 and batch_clips({"video": skipped, "image": batches[0]}) == 3  # joint batches


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX")
                    is not None, reason="checks the fallback when TensorBoard is missing")
def test_tensorboard_is_skipped_with_a_warning_when_not_installed(tmp_path, quiet_trainer):
    with pytest.warns(UserWarning, match="tensorboard is not installed"):
        logger = OptionalTensorBoard(save_dir=str(tmp_path))
    trainer = quiet_trainer(max_steps=2, logger=[L.pytorch.loggers.CSVLogger(tmp_path), logger])
    trainer.fit(Regression(), loader())  # logs go to the CSV logger; nothing fails
    assert logger.log_dir is None and (tmp_path / "lightning_logs").exists()
