"""Joint image + video training: one datamodule whose training batches hold a video batch and an image batch.

TrajViT2 is trained on videos and images together (the paper: per step and device, 8 videos and 64 images,
images being one-frame clips). ``JointDataModule`` wraps a video datamodule and an image datamodule (each
configured as usual, by ``class_path`` / ``init_args``); every training step gets
``{"video": <video batch>, "image": <image batch>}``, two batches of the data contract (see ``datamodules``),
so the mix per step is the two ``loader.batch_size`` s. ``trajtok.module.TrajTokModule`` runs each through the same
tokenizer and head, as separate contrastive problems (negatives only within a source, as in the paper), sums
the losses and logs each source's (``train/loss_video``, ``train/loss_image``) beside the total.

An epoch under ``mode="max_size_cycle"`` (default) is as long as the longer of the two training loaders; the
shorter one starts over when it runs out (a ``DataLoader`` reshuffles; a shard loader rereads the same epoch's
order). ``"min_size"`` ends the epoch with the shorter one. Validation, test and predict read the video data only,
so video retrieval metrics and checkpoint monitors stay as without images.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from torch.utils.data import DataLoader

JointMode = Literal["max_size_cycle", "min_size"]


class JointDataModule(L.LightningDataModule):
    """Training batches of videos and images together; evaluation on the videos (see the module doc).

    Args:
        videos: the video datamodule (``VideoTextDataModule``, ``ShardDataModule``, ...); its ``loader.batch_size``
            is the videos per step and process, and its validation / test data are the run's.
        images: the image datamodule (``ImageTextDataModule``, ``ImageShardDataModule``); its ``loader.batch_size``
            is the images per step and process (the paper: 64 images to 8 videos).
        mode: how the epoch's length follows the two training loaders: ``max_size_cycle`` (the longer one,
            the shorter one cycling) or ``min_size`` (the shorter one).
    """

    def __init__(self, videos: L.LightningDataModule, images: L.LightningDataModule,
                 mode: JointMode = "max_size_cycle") -> None:
        super().__init__()
        for name, value in (("videos", videos), ("images", images)):
            if not isinstance(value, L.LightningDataModule):
                raise TypeError(f"JointDataModule {name} must be a LightningDataModule, got {type(value).__name__}")
        if mode not in ("max_size_cycle", "min_size"):
            # "sequential" / "max_size" would give steps with one source missing.
            raise ValueError(f"JointDataModule mode must be 'max_size_cycle' or 'min_size', got {mode!r}")
        self.save_hyperparameters(ignore=["videos", "images"])
        self.videos = videos
        self.images = images
        self.mode = mode

    def _share_trainer(self) -> None:
        # The parts seed their loaders from the trainer's epoch (ClipDataModule, ShardDataModule).
        self.videos.trainer = self.images.trainer = self.trainer

    def prepare_data(self) -> None:
        self.videos.prepare_data()
        self.images.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self._share_trainer()
        self.videos.setup(stage)
        if stage in ("fit", None):
            self.images.setup("fit")

    def train_dataloader(self) -> CombinedLoader:
        self._share_trainer()
        return CombinedLoader({"video": self.videos.train_dataloader(), "image": self.images.train_dataloader()},
                              mode=self.mode)

    def val_dataloader(self) -> DataLoader | list:
        return self.videos.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.videos.test_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.videos.predict_dataloader()

    def __getattr__(self, name: str) -> Any:
        # What else is read off the datamodule (``class_names`` by the module; ``num_frames``, ``image_size``,
        # the splits' ``datasets`` by ``trajtok visualize``) is the videos'.
        if name in ("videos", "images") or name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.videos, name)
