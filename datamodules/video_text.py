"""Video-text data: the per-sample dataset, its collate function, and the LightningDataModule.

With no annotation files the datamodule serves the embedded synthetic shapes set (generated once into a
cache folder), through exactly the same reading path as real data.

What does not depend on the annotation (skipping bad samples, decoding a clip with its pseudo-labels,
collating masks and graphs and skip reports, the split loaders) lives in ``RecordDataset``, ``ClipDataset``,
``collate_pseudo_labels``, ``collate_skipped`` and ``ClipDataModule``, shared with the classification, QA
and image-text data (``datamodules.classification``, ``datamodules.qa``, ``datamodules.images``).

Skipped samples travel in the batch (``skipped``) rather than in counters on the dataset: DataLoader workers
are separate processes, each holding its own copy of the dataset, so counters there are per worker and
never reach the training process. A batch, by contrast, reaches the model exactly once, whatever the
number of workers; ``trajtok.callbacks.BadSampleReport`` sums the reports of an epoch's batches.
"""

from __future__ import annotations

import functools
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Literal

import lightning as L
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from datamodules.annotations import (
    AnnotationKeys,
    LabelledVideoRecord,
    VideoTextRecord,
    read_video_text_annotations,
)
from datamodules.pseudo_labels import PseudoLabelError, load_pseudo_labels
from datamodules.synthetic import SyntheticConfig, ensure_synthetic
from datamodules.transforms import (
    crop_area_range,
    eval_clip_transform,
    train_clip_transform,
)
from datamodules.video import BadSampleError, decode_clip
from trajtok.errors import UserError
from trajtok.seeding import loader_generator

log = logging.getLogger(__name__)

OnBadVideo = Literal["skip", "raise"]
# What a clip dataset needs of a record: video, start_sec, end_sec, mask, graph.
ClipRecord = VideoTextRecord | LabelledVideoRecord
# The splits each Lightning stage reads.
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


def drop_missing_trajectories(masks: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
    """Zero graph entries whose segment id no longer occurs in that frame's mask (cropped away or
    lost in resizing), so no trajectory claims a segment with no pixels."""
    num_frames = masks.shape[0]
    present = torch.zeros(num_frames, 256, dtype=torch.bool)
    present.scatter_(1, masks.reshape(num_frames, -1).long(), True)
    present[:, 0] = False  # id 0 is "absent", never a segment
    keep = present[torch.arange(num_frames)[None, :], graph]  # (M, T)
    return torch.where(keep, graph, torch.zeros_like(graph))


#: Marks the sample of a skipped record: a hole in its batch (see ``RecordDataset``).
HOLE = "hole"


class MissingFilesError(UserError, FileNotFoundError):
    """Files that annotation rows name and that do not exist, all of them in one message."""


class RecordDataset(Dataset, ABC):
    """Samples of annotation records under the bad-sample policy; subclasses say how a record becomes a
    sample (``load``).

    ``on_bad_video="skip"`` answers an unusable sample (``load`` raised ``BadSampleError``: a missing,
    corrupt, truncated or empty file) with a *hole*: ``{"index", "skipped", HOLE: True}``, no clip. Collate
    functions (``drops_skipped``) leave holes out, so the batch shrinks; no other sample stands in (a
    duplicate in a contrastive batch would be a false negative). ``skipped`` lists the bad sample as a dict of
    ``index``, ``path`` (the offending file), ``reason`` and ``origin`` (the annotation file and row, when
    known), which the collate function gathers into the batch. ``num_skipped`` and ``skipped_paths`` count
    distinct skipped samples of this process only (with DataLoader workers, of one worker): the batch's
    ``skipped`` is the exact record. A sample found bad once is not loaded again, but is still reported each
    time it is drawn. ``"raise"`` lets the error through, naming the file and the annotation row.
    """

    def __init__(self, records: Sequence[Any], on_bad_video: OnBadVideo = "skip", max_reported: NonNegativeInt = 10) -> None:
        if on_bad_video not in ("skip", "raise"):
            raise ValueError(f"on_bad_video must be 'skip' or 'raise', got {on_bad_video!r}")
        if not records:
            raise ValueError("no records")
        self.records = list(records)
        self.on_bad_video = on_bad_video
        self.max_reported = max_reported
        self.num_skipped = 0
        self.skipped_paths: list[str] = []
        self._bad: dict[int, dict[str, Any]] = {}  # index -> its skip report
        if on_bad_video == "raise":
            self.check_files_exist()

    def record_files(self, index: int) -> list[str]:
        """The local files sample ``index`` reads (for ``check_files_exist``); default none known."""
        return []

    def check_files_exist(self, shown: int = 20) -> None:
        """Under ``on_bad_video="raise"``: every file the records name exists, checked before the first batch,
        so that a missing clip stops a long evaluation at its start, with all missing files in one error."""
        missing = [(i, path) for i in range(len(self.records)) for path in self.record_files(i)
                   if not os.path.exists(path)]
        if missing:
            listed = "; ".join(f"{path} ({self.origin(i) or f'sample {i}'})" for i, path in missing[:shown])
            more = f"; ... ({len(missing) - shown} more)" if len(missing) > shown else ""
            raise MissingFilesError(f"{len(missing)} file(s) named by the annotations are missing (on_bad_video: "
                                    f"raise; 'skip' would leave them out): {listed}{more}")

    def __len__(self) -> int:
        return len(self.records)

    @abstractmethod
    def load(self, index: int) -> dict[str, Any]:
        """One sample, or a ``BadSampleError`` naming the file that prevents it."""

    def origin(self, index: int) -> str | None:
        """Where sample ``index`` was declared ("file, row N"), when its record knows."""
        return getattr(self.records[index], "origin", None)

    def _load_located(self, index: int) -> dict[str, Any]:
        try:
            return self.load(index)
        except BadSampleError as e:
            e.locate(self.origin(index))
            raise

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.on_bad_video == "raise":
            return self._load_located(index)
        if index not in self._bad:
            try:
                return {**self._load_located(index), "skipped": []}
            except BadSampleError as e:
                self._note_bad(index, e)
            if len(self._bad) == len(self):
                raise RuntimeError(f"none of the {len(self)} samples could be loaded; first bad files: "
                                   f"{self.skipped_paths}")
        return {"index": index, "skipped": [dict(self._bad[index])], HOLE: True}

    def _note_bad(self, index: int, error: BadSampleError) -> None:
        self._bad[index] = {"index": index, "path": error.path, "reason": error.reason, "origin": self.origin(index)}
        self.num_skipped += 1
        if len(self.skipped_paths) < self.max_reported:
            self.skipped_paths.append(error.path)
        log.warning("skipping sample %d: %s", index, error)


class ClipDataset(RecordDataset):
    """Clips of annotated videos: decoding with pseudo-labels and transforms, under the bad-sample policy
    of ``RecordDataset`` (unusable: a missing, corrupt, truncated, empty or audio-only video; broken
    pseudo-labels).

    Subclasses say what a sample holds besides the clip (``load``).
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        num_frames: PositiveInt = 8,
        image_size: PositiveInt = 64,
        train: bool = False,
        on_bad_video: OnBadVideo = "skip",
        load_pseudo_labels: bool = True,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        horizontal_flip: bool = False,
        max_reported: NonNegativeInt = 10,
    ) -> None:
        super().__init__(records, on_bad_video, max_reported)
        self.num_frames = num_frames
        self.image_size = image_size
        self.train = train
        self.crop_scale = crop_area_range(crop_scale)
        self.horizontal_flip = horizontal_flip
        half = [r.video for r in self.records if (r.mask is None) != (r.graph is None)]
        if load_pseudo_labels and half:
            raise ValueError(f"{len(half)} records name only one of mask / graph, e.g. {half[0]}")
        with_labels = sum(r.mask is not None for r in self.records)
        if load_pseudo_labels and 0 < with_labels < len(self.records):
            # Mixed batches would silently lose the segmentation targets of some clips.
            raise ValueError(
                f"{with_labels} of {len(self.records)} records have mask and graph files; give them for all or "
                "set load_pseudo_labels=False"
            )
        self.load_pseudo_labels = load_pseudo_labels and with_labels > 0
        if on_bad_video == "raise":
            self.check_files_exist()  # again: the pseudo-label files count once load_pseudo_labels is known

    def record_files(self, index: int) -> list[str]:
        rec = self.records[index]
        video = [rec.video] if isinstance(rec.video, (str, os.PathLike)) and "://" not in str(rec.video) else []
        labels = [rec.mask, rec.graph] if getattr(self, "load_pseudo_labels", False) else []
        return [str(path) for path in [*video, *labels]]

    def load_clip(self, rec: ClipRecord) -> dict[str, torch.Tensor]:
        """``video`` of a record, transformed, plus ``mask`` and ``graph`` when pseudo-labels are loaded;
        or a ``BadSampleError`` naming the file that prevents it."""
        clip = decode_clip(
            rec.video, self.num_frames, "random" if self.train else "middle", rec.start_sec, rec.end_sec
        )
        masks = graph = stuff = None
        if self.load_pseudo_labels:
            masks_np, graph_np, stuff = load_pseudo_labels(rec.mask, rec.graph)
            if masks_np.shape[0] != clip.num_range_frames:
                raise PseudoLabelError(
                    rec.mask, f"has {masks_np.shape[0]} frames, the video ({rec.video}) has {clip.num_range_frames}"
                )
            masks = torch.from_numpy(masks_np[clip.indices])
            graph = torch.from_numpy(graph_np[:, clip.indices])
        if self.train:
            video, masks = train_clip_transform(
                clip.frames, self.image_size, self.crop_scale, self.horizontal_flip, masks
            )
        else:
            video, masks = eval_clip_transform(clip.frames, self.image_size, masks)
        out = {"video": video}
        if masks is not None:
            out["mask"] = masks
            out["graph"] = drop_missing_trajectories(masks, graph)
            out["stuff"] = torch.from_numpy(stuff)
        return out


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


def collate_pseudo_labels(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """``mask`` uint8 ``(B, T, S, S)``, ``graph`` long ``(B, M, T)`` and ``stuff`` bool ``(B, M)`` of samples
    that carry them (else nothing); trajectory graphs of different lengths are padded with absent (0) rows."""
    if "mask" not in samples[0]:
        return {}
    return {
        "mask": torch.stack([s["mask"] for s in samples]),
        "graph": pad_sequence([s["graph"].long() for s in samples], batch_first=True, padding_value=0),
        "stuff": pad_sequence([s.get("stuff", torch.zeros(len(s["graph"]), dtype=torch.bool)) for s in samples],
                              batch_first=True, padding_value=False),
    }


def collate_skipped(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The skip reports of all samples (see ``RecordDataset``), as one list: the batch's ``skipped``. A bad
    sample may be reported by several batches; ``BadSampleReport`` counts it once per epoch."""
    return [report for s in samples for report in s.get("skipped", ())]


def drops_skipped(collate: Callable[[list[dict[str, Any]]], dict[str, Any]]):
    """``collate`` over the usable samples only: the holes of skipped samples (``RecordDataset``) are left out
    and the batch shrinks; their reports go in ``skipped``. A batch whose samples were all skipped is
    ``{"skipped": reports}`` alone, with no ``video``: ``TrajTokModule`` skips it (and counts it)."""

    @functools.wraps(collate)
    def collate_usable(samples: list[dict[str, Any]]) -> dict[str, Any]:
        usable = [s for s in samples if not s.get(HOLE)]
        reports = collate_skipped(samples)
        return {**collate(usable), "skipped": reports} if usable else {"skipped": reports}

    return collate_usable


@drops_skipped
def collate_video_text(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into the batch of the data contract (see ``datamodules``); trajectory graphs of
    different lengths are padded with absent (0) rows."""
    return {
        "video": torch.stack([s["video"] for s in samples]),
        "text": [s["text"] for s in samples],
        "captions": [s["captions"] for s in samples],
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "skipped": collate_skipped(samples),
        **collate_pseudo_labels(samples),
    }


class ClipDataModule(L.LightningDataModule, ABC):
    """Loaders over per-split clip datasets, shared by the video-text and classification datamodules.

    Subclasses set ``datasets`` (filled by ``setup``), ``batch_size``, ``eval_batch_size``,
    ``num_workers`` and ``collate_fn``, and say where a split's annotations are (``annotation_path``) and
    how they become a dataset (``build_dataset``).
    """

    datasets: dict[str, ClipDataset]
    batch_size: int
    eval_batch_size: int
    num_workers: int
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]]

    def _set_common(
        self, root: str | None, annotations: tuple[str | None, str | None, str | None], num_frames: int,
        image_size: int, batch_size: int, eval_batch_size: int | None, num_workers: int, on_bad_video: OnBadVideo,
        crop_scale: tuple[float, float], horizontal_flip: bool, cache_dir: str | None, synthetic: SyntheticConfig,
    ) -> None:
        """The options every clip datamodule has (see ``VideoTextDataModule`` for what each means)."""
        if on_bad_video not in ("skip", "raise"):
            raise ValueError(f"on_bad_video must be 'skip' or 'raise', got {on_bad_video!r}")
        self.root = root
        self.annotations = dict(zip(("train", "val", "test"), annotations))
        self.synthetic = all(v is None for v in annotations)
        self.synthetic_config = synthetic
        self.cache_dir = cache_dir
        self.num_frames = num_frames
        self.image_size = image_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.on_bad_video = on_bad_video
        self.crop_scale = crop_area_range(crop_scale)
        self.horizontal_flip = horizontal_flip
        self.datasets = {}

    @abstractmethod
    def annotation_path(self, split: str) -> str | None:
        """The annotations of a split, or None when the split has no data."""

    @abstractmethod
    def build_dataset(self, split: str, path: str) -> ClipDataset:
        """The dataset of a split, from its annotations."""

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage, ("train", "val", "test")):
            path = self.annotation_path(split)
            if path is None or split in self.datasets:
                continue
            self.datasets[split] = self.build_dataset(split, path)

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        if split not in self.datasets:
            raise ValueError(f"no {split} data: set {split}_annotations")
        dataset = self.datasets[split]
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            # Contrastive losses want full batches, and any loss gets a noisy step from a tiny last batch;
            # shuffling puts the dropped samples back in a later epoch.
            drop_last=train and len(dataset) >= self.batch_size,
            num_workers=self.num_workers,
            # Training workers start afresh each epoch, seeded from (seed, epoch): persistent ones would carry
            # their random state across epochs, which a resumed run cannot reproduce.
            persistent_workers=self.num_workers > 0 and not train,
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


class VideoTextDataModule(ClipDataModule):
    """Video-text retrieval / contrastive data from annotation files, or the synthetic default.

    Args:
        root: folder that video (and pseudo-label) paths in the annotations are relative to; default:
            each annotation file's own folder.
        train_annotations, val_annotations, test_annotations: JSONL / JSON / CSV files. When all three
            are None the embedded synthetic set is used (generated on first use into ``cache_dir``).
            predict uses the test set.
        num_frames, image_size: frames per clip and square side of the model input.
        batch_size, eval_batch_size: per-process batch sizes (eval defaults to ``batch_size``).
        num_workers: DataLoader worker processes.
        on_bad_video: "skip" leaves unusable samples out of their batch (which shrinks) and reports them
            in its ``skipped`` (``trajtok.callbacks.BadSampleReport`` logs them per epoch); "raise" fails with
            the file's path and annotation row.
        load_pseudo_labels: add ``mask`` / ``graph`` to batches when the annotations name those files.
        crop_scale: area range of the random resized crop in training (1.0, 1.0 disables cropping).
        horizontal_flip: off by default, since it reverses "left"/"right" in the pixels but not the text.
        video_key, caption_key, start_key, end_key, mask_key, graph_key: annotation key names.
        cache_dir: synthetic cache; default ``$TRAJTOK_CACHE/synthetic`` or ``~/.cache/trajtok/synthetic``.
        synthetic_seed, synthetic_train, synthetic_val, synthetic_test: the synthetic set's seed and sizes.
        synthetic_frames: frames per synthetic video (16; e.g. 64 for a long-video set, generated separately).
    """

    collate_fn = staticmethod(collate_video_text)

    def __init__(
        self,
        root: str | None = None,
        train_annotations: str | None = None,
        val_annotations: str | None = None,
        test_annotations: str | None = None,
        num_frames: PositiveInt = 8,
        image_size: PositiveInt = 64,
        batch_size: PositiveInt = 32,
        eval_batch_size: PositiveInt | None = None,
        num_workers: NonNegativeInt = 0,
        on_bad_video: OnBadVideo = "skip",
        load_pseudo_labels: bool = True,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        horizontal_flip: bool = False,
        video_key: str = "video",
        caption_key: str = "caption",
        start_key: str = "start",
        end_key: str = "end",
        mask_key: str = "mask",
        graph_key: str = "graph",
        cache_dir: str | None = None,
        synthetic_seed: int = 0,
        synthetic_train: PositiveInt = 768,
        synthetic_val: PositiveInt = 96,
        synthetic_test: PositiveInt = 128,
        synthetic_frames: PositiveInt = 16,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._set_common(
            root, (train_annotations, val_annotations, test_annotations), num_frames, image_size, batch_size,
            eval_batch_size, num_workers, on_bad_video, crop_scale, horizontal_flip, cache_dir,
            SyntheticConfig(seed=synthetic_seed, train=synthetic_train, val=synthetic_val, test=synthetic_test,
                            num_frames=synthetic_frames),
        )
        self.keys = AnnotationKeys(video_key, caption_key, start_key, end_key, mask_key, graph_key)
        self.load_pseudo_labels = load_pseudo_labels

    def prepare_data(self) -> None:
        """Generate the synthetic set if it is used and missing (Lightning calls this on one process
        per node; generation is atomic anyway)."""
        if self.synthetic:
            ensure_synthetic(self.cache_dir, self.synthetic_config)

    def annotation_path(self, split: str) -> str | None:
        """The annotation file of a split (for the synthetic set: in its cache folder)."""
        if self.synthetic:
            return os.path.join(ensure_synthetic(self.cache_dir, self.synthetic_config), f"{split}.jsonl")
        return self.annotations[split]

    def build_dataset(self, split: str, path: str) -> VideoTextDataset:
        return VideoTextDataset(
            read_video_text_annotations(path, None if self.synthetic else self.root, self.keys),
            num_frames=self.num_frames,
            image_size=self.image_size,
            train=split == "train",
            on_bad_video=self.on_bad_video,
            load_pseudo_labels=self.load_pseudo_labels,
            crop_scale=self.crop_scale,
            horizontal_flip=self.horizontal_flip,
        )
