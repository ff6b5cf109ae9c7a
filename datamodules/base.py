"""``ClipDataModule``, the base of the file-based datamodules (video-text, classification, QA, image-text),
and the mapping between data splits and Lightning stages that every datamodule uses. ``DataModule`` (under
every datamodule with option groups) stores the groups in checkpoints as plain data.

The base holds what does not depend on what a sample is: the split's annotation files, the option groups
(``datamodules.options``), building each split's dataset once when a stage needs it, and the loaders. A
subclass says where a split's annotations are (``annotation_path``) and how they become a dataset
(``build_dataset``).
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from datamodules.options import (
    AnnotationKeys,
    FrameOptions,
    LoaderOptions,
    SyntheticOptions,
)
from datamodules.seeding import loader_generator
from datamodules.synthetic import SCENARIOS, ensure_synthetic

#: The Lightning stage whose ``setup`` builds a split's dataset.
SPLIT_STAGES = {"train": "fit", "val": "validate", "test": "test"}
#: The splits each Lightning stage reads (predict reads the test split).
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


class DataModule(L.LightningDataModule):
    """A LightningDataModule whose hyperparameters hold its option groups as plain dicts: checkpoints store
    the hyperparameters, and ``torch.load(weights_only=True)`` (how checkpoints are read) refuses classes."""

    def save_hyperparameters(self, *args: Any, frame: Any = None, **kwargs: Any) -> None:
        # Lightning reads the constructor's arguments from the caller's frame, which is one further out here.
        super().save_hyperparameters(*args, frame=frame or inspect.currentframe().f_back, **kwargs)
        for key, value in self.hparams.items():
            if dataclasses.is_dataclass(value):
                self.hparams[key] = dataclasses.asdict(value)


class ClipDataModule(DataModule, ABC):
    """Loaders over per-split datasets of annotation files, or of the synthetic set when no split has
    annotations (``synthetic`` is then True).

    Keyword arguments: ``root`` and ``annotations`` (each split's file, None for a split without data, as the
    subclasses' ``root`` and ``*_annotations`` arguments say), and the option groups ``clip``, ``loader``, ``keys``
    and ``synthetic`` (``datamodules.options``; kept as ``synthetic_options``, since ``synthetic`` says whether the
    synthetic set is used). Subclasses set ``collate_fn``, and ``synthetic_scenarios`` where they serve only some
    scenarios of the synthetic set (``unserved_scenario`` then says why the others do not apply).
    """

    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]]
    #: The synthetic scenarios (``SyntheticConfig.scenario``) this datamodule can serve.
    synthetic_scenarios: tuple[str, ...] = SCENARIOS
    #: Why a scenario outside ``synthetic_scenarios`` does not apply here (part of the error).
    unserved_scenario: str = ""

    def __init__(self, *, root: str | None, annotations: tuple[str | None, str | None, str | None],
                 clip: FrameOptions, loader: LoaderOptions, synthetic: SyntheticOptions,
                 keys: AnnotationKeys = AnnotationKeys()) -> None:
        super().__init__()
        self.root = root
        self.annotations = dict(zip(SPLIT_STAGES, annotations))
        self.synthetic = all(path is None for path in annotations)
        if self.synthetic and synthetic.scenario not in self.synthetic_scenarios:
            raise ValueError(f"{type(self).__name__} serves synthetic.scenario {' or '.join(self.synthetic_scenarios)}, "
                             f"not {synthetic.scenario!r}: {self.unserved_scenario}")
        self.synthetic_options = synthetic
        self.clip = clip
        self.loader = loader
        self.keys = keys
        self.datasets: dict[str, Dataset] = {}

    def synthetic_folder(self) -> str:
        """The synthetic set's folder, generated when missing."""
        return ensure_synthetic(self.synthetic_options.cache_dir, self.synthetic_options.config())

    def reading(self) -> tuple[str | None, AnnotationKeys]:
        """The root and the keys annotation files are read with: ``root`` and ``keys``, but for the synthetic set
        its files' own folder and the default keys (its files are written with them, whatever the options)."""
        return (None, AnnotationKeys()) if self.synthetic else (self.root, self.keys)

    @abstractmethod
    def annotation_path(self, split: str) -> str | None:
        """The annotations of a split, or None when the split has no data."""

    @abstractmethod
    def build_dataset(self, split: str, path: str) -> Dataset:
        """The dataset of a split, from its annotations."""

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage, tuple(SPLIT_STAGES)):
            path = self.annotation_path(split)
            if path is None or split in self.datasets:
                continue
            self.datasets[split] = self.build_dataset(split, path)

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup(SPLIT_STAGES[split])
        if split not in self.datasets:
            raise ValueError(f"no {split} data: set {split}_annotations")
        dataset = self.datasets[split]
        batch_size, num_workers = self.loader.batch_size_for(train), self.loader.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            # Contrastive losses want full batches, and any loss gets a noisy step from a tiny last batch;
            # shuffling puts the dropped samples back in a later epoch.
            drop_last=train and len(dataset) >= batch_size,
            num_workers=num_workers,
            # Training workers start afresh each epoch, seeded from (seed, epoch): persistent ones would carry
            # their random state across epochs, which a resumed run cannot reproduce.
            persistent_workers=num_workers > 0 and not train,
            generator=loader_generator(self.trainer) if train else None,
            collate_fn=self.collate_fn,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        # No validation set is allowed: Lightning skips validation for an empty list of loaders.
        if self.annotation_path("val") is None:
            return []
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
