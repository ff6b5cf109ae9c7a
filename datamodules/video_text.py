"""Video-text data: the per-sample dataset and ``VideoTextDataModule``.

With no annotation files the datamodule serves the embedded synthetic shapes set (generated once into a
cache folder), through exactly the same reading path as real data. What does not depend on the annotation
lives in the shared modules: the bad-sample policy (``datamodules.bad_samples``), decoding a clip with its
pseudo-labels (``datamodules.clips``), collating (``datamodules.collate``), the split loaders
(``datamodules.base``) and the option groups (``datamodules.options``).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from datamodules.annotations import VideoTextRecord, read_video_text_annotations
from datamodules.bad_samples import OnBadSample
from datamodules.base import ClipDataModule
from datamodules.clips import ClipDataset
from datamodules.collate import collate_video_text
from datamodules.options import (
    AnnotationKeys,
    ClipOptions,
    LoaderOptions,
    SyntheticOptions,
)


class VideoTextDataset(ClipDataset):
    """Clips of annotated videos, as dicts: ``video`` float ``(T, 3, S, S)``, ``text`` (a random caption
    in training, the first otherwise), ``captions``, ``index``; plus ``mask`` uint8 ``(T, S, S)``,
    ``graph`` int64 ``(M, T)`` and ``stuff`` bool ``(M,)`` when pseudo-labels are loaded.

    Unusable samples are skipped (a skipped sample's captions go with it) or raised as ``ClipDataset``
    says (``on_bad_video``, ``num_skipped``, ``skipped_paths``).
    """

    records: list[VideoTextRecord]

    def load(self, index: int) -> dict[str, Any]:
        """One sample, or a ``BadSampleError`` naming the file that prevents it."""
        rec = self.records[index]
        clip = self.load_clip(rec)
        # Drawn after the clip, so the random stream (frame jitter, crop, caption) keeps its order.
        text = rec.captions[int(torch.randint(len(rec.captions), (1,)))] if self.train else rec.captions[0]
        return {**clip, "text": text, "captions": list(rec.captions), "index": index}


class VideoTextDataModule(ClipDataModule):
    """Video-text retrieval / contrastive data from annotation files, or the synthetic default.

    Args:
        root: folder that video (and pseudo-label) paths in the annotations are relative to; default:
            each annotation file's own folder.
        train_annotations: JSONL / JSON / CSV file of the train split. When no split has a file, the
            embedded synthetic set is used (see ``synthetic``).
        val_annotations: the val split's file; None: no validation.
        test_annotations: the test split's file (predict uses it too).
        clip: frames per clip, input size and training augmentation.
        loader: batch sizes and DataLoader workers.
        on_bad_video: "skip" leaves unusable samples out of their batch (which shrinks) and reports them
            in its ``skipped`` (``trajtok.callbacks.BadSampleReport`` logs them per epoch); "raise" fails with
            the file's path and annotation row.
        load_pseudo_labels: add ``mask`` / ``graph`` to batches when the annotations name those files.
        keys: the annotation files' key names (``video``, ``caption``, ``start``, ``end``, ``mask``, ``graph``).
        synthetic: the synthetic set used when no annotations are given.
    """

    collate_fn = staticmethod(collate_video_text)

    def __init__(
        self,
        root: str | None = None,
        train_annotations: str | None = None,
        val_annotations: str | None = None,
        test_annotations: str | None = None,
        clip: ClipOptions = ClipOptions(),
        loader: LoaderOptions = LoaderOptions(),
        on_bad_video: OnBadSample = "skip",
        load_pseudo_labels: bool = True,
        keys: AnnotationKeys = AnnotationKeys(),
        synthetic: SyntheticOptions = SyntheticOptions(),
    ) -> None:
        super().__init__(root=root, annotations=(train_annotations, val_annotations, test_annotations), clip=clip,
                         loader=loader, keys=keys, synthetic=synthetic)
        self.save_hyperparameters()
        self.on_bad_video = on_bad_video
        self.load_pseudo_labels = load_pseudo_labels

    def prepare_data(self) -> None:
        """Generate the synthetic set if it is used and missing (Lightning calls this on one process
        per node; generation is atomic anyway)."""
        if self.synthetic:
            self.synthetic_folder()

    def annotation_path(self, split: str) -> str | None:
        """The annotation file of a split (for the synthetic set: in its cache folder)."""
        if self.synthetic:
            return os.path.join(self.synthetic_folder(), f"{split}.jsonl")
        return self.annotations[split]

    def read_records(self, split: str, path: str) -> list[VideoTextRecord]:
        """The records of a split's annotation file."""
        return read_video_text_annotations(path, *self.reading())

    def build_dataset(self, split: str, path: str) -> VideoTextDataset:
        return VideoTextDataset(
            self.read_records(split, path),
            self.clip,
            train=split == "train",
            on_bad_video=self.on_bad_video,
            load_pseudo_labels=self.load_pseudo_labels,
        )
