"""The videos to pseudo-label: every clip of a datamodule's split (annotation files of any kind the datamodules
read, or the synthetic set), every video under a folder, or every sample of tar shards, each decoded whole
(``video.read_all_frames``) and named by where its labels go.

A video's labels are ``<out_dir>/<path relative to the data root, without extension>_mask.npz`` and
``..._graph.npz`` (``pseudo_label_files.pseudo_label_paths``; a ``start``..``end`` clip adds ``_<start>-<end>s``); where
two inputs would share that name (``same.mp4`` and ``same.mkv``), each of them keeps its extension instead
(``same.mp4_mask.npz``), and inputs that would still share a name are an error before anything is labelled
(``label_items``). A shard sample's are ``<out_dir>/<shard name>/<key>_mask.npz`` and ``_graph.npz``
(``pseudo_label_files.shard_label_paths``), where ``ShardDataModule(pseudo_labels=out_dir)`` reads them beside the
shards' videos.

A video is done when both its files exist and the writer has recorded it: a ``labelled`` row named as the video in
``<out_dir>/stats.rank*.jsonl`` (``read_stats``), appended only after both files are in place. A done video's sample
says so without decoding (``done``), which makes a rerun resume; a video whose files exist without its row (a run
stopped between the two) is labelled again. Every process lists the same videos, so Lightning's distributed sampler
gives each a disjoint share; shards are streamed instead, each process (and DataLoader worker) reading whole shards
of its own, as ``ShardedVideoTextDataset`` deals them.

Batches are ``{"samples": [...], "skipped": [...]}``: each sample ``{"index", "item", "frames"}`` (``item``: the
``LabelItem`` as a dict; frames uint8 ``(T, H, W, 3)``) or ``{"index", "item", "done": True}``; ``skipped`` as in
every clip batch (``bad_samples``).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning as L
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch.utils.data import DataLoader

from datamodules.bad_samples import HOLE, OnBadSample, RecordDataset
from datamodules.base import SPLIT_STAGES
from datamodules.collate import collate_skipped
from datamodules.pseudo_label_files import (
    pseudo_label_paths,
    shard_label_paths,
    shard_name,
)
from datamodules.shards import (
    ShardedVideoTextDataset,
    ShardError,
    Shards,
    ShardSample,
    check_shard_names,
    expand_shards,
)
from datamodules.video import VIDEO_EXTENSIONS, BadSampleError, read_all_frames


@dataclass(frozen=True)
class LabelItem:
    """One video (clip) to label: where it is, where its labels go, and its annotation row (captions, label)."""

    video: str
    start_sec: float | None
    end_sec: float | None
    mask: str
    graph: str
    row: dict[str, Any] = field(default_factory=dict)

    def name(self, out_dir: str) -> str:
        """The video's name in the outputs: its mask file's path below ``out_dir`` without ``_mask.npz``."""
        return os.path.relpath(self.mask, out_dir)[: -len("_mask.npz")]

    @property
    def has_files(self) -> bool:
        """Both label files exist (each is written whole, by a rename)."""
        return os.path.isfile(self.mask) and os.path.isfile(self.graph)

    def done(self, out_dir: str, recorded: set[str]) -> bool:
        """Both label files exist and the writer recorded the video (``recorded``: ``recorded_names``)."""
        return self.name(out_dir) in recorded and self.has_files


STATS_FILES = "stats.rank*.jsonl"


def read_stats(out_dir: str) -> list[dict[str, Any]]:
    """The writer's statistics rows in ``out_dir`` (``stats.rank<R>.jsonl`` of every process and run), oldest
    first: by the time written, rows of the same time (and rows of older versions, without one) in file order. A
    line a killed process left unfinished is not a row."""
    rows = []
    for path in sorted(glob.glob(os.path.join(glob.escape(out_dir), STATS_FILES))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and isinstance(row.get("name"), str):
                    rows.append(row)
    return sorted(rows, key=lambda row: row.get("time", 0.0))


def recorded_names(out_dir: str) -> set[str]:
    """The names of the videos the writer recorded as labelled in ``out_dir``."""
    return {row["name"] for row in read_stats(out_dir) if row.get("status") == "labelled"}


def check_writable(out_dir: str) -> None:
    """Create ``out_dir`` and a file in it, or fail naming the folder, before any video is labelled."""
    probe = os.path.join(out_dir, f".write-test.{uuid.uuid4().hex}")
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(probe, "w", encoding="utf-8"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"data.out_dir: cannot write the pseudo-labels in {os.path.abspath(out_dir)}: "
                         f"{e.strerror or e}") from e


def _seconds(value: float) -> str:
    """A clip bound in a file name: ``%g`` where that is exact, else the shortest exact form."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def label_items(entries: list[tuple[str, float | None, float | None, dict[str, Any]]], root: str,
                out_dir: str) -> list[LabelItem]:
    """The items of ``(video, start, end, row)`` entries of videos under ``root``; their labels mirror their place
    under ``out_dir``: ``<path without extension>[_<start>-<end>s]`` (TrajViT's names), or, for every input whose
    name another input also has, ``<path with extension>[...]``. Inputs that still share a name are a ``ValueError``
    naming both."""
    relative = []
    for video, start, end, _ in entries:
        rel = os.path.relpath(video, root)
        if rel.startswith(os.pardir):
            raise ValueError(f"{video}: outside the data root {root}; pseudo-labels are named by the path below it")
        clip = "" if start is None and end is None else \
            f"_{_seconds(start or 0)}-{'end' if end is None else _seconds(end)}s"
        relative.append((os.path.splitext(rel)[0] + clip, rel + clip))
    whole = [False] * len(entries)  # named with the extension
    while True:
        names = [full if w else short for (short, full), w in zip(relative, whole)]
        owners: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            owners.setdefault(os.path.normcase(name), []).append(i)
        shared = [i for group in owners.values() if len(group) > 1 for i in group if not whole[i]]
        if not shared:
            break
        for i in shared:
            whole[i] = True
    for group in owners.values():
        if len(group) > 1:
            a, b = (entries[i] for i in group[:2])
            raise ValueError(f"{_describe(a)} and {_describe(b)} would both be labelled as "
                             f"{os.path.join(out_dir, names[group[0]])}_mask.npz; rename one of them")
    items = []
    for (video, start, end, row), name in zip(entries, names):
        mask, graph = pseudo_label_paths(os.path.join(out_dir, name + ".mp4"))
        items.append(LabelItem(video, start, end, mask, graph, row or {}))
    return items


def _describe(entry: tuple[str, float | None, float | None, dict[str, Any]]) -> str:
    video, start, end, _ = entry
    if start is None and end is None:
        return video
    return f"{video} ({start or 0:g} s to {'its end' if end is None else f'{end:g} s'})"


def folder_items(folder: str, out_dir: str) -> list[LabelItem]:
    """Every video (``datamodules.video.VIDEO_EXTENSIONS``) under ``folder``, sorted; hidden entries are skipped."""
    if not os.path.isdir(folder):
        raise ValueError(f"folder: {folder} is not a directory")
    videos = sorted(
        os.path.join(d, f) for d, dirs, files in os.walk(folder) for f in files
        if f.lower().endswith(VIDEO_EXTENSIONS) and not f.startswith(".")
        and not any(part.startswith(".") for part in os.path.relpath(d, folder).split(os.sep) if part != ".")
    )
    if not videos:
        raise ValueError(f"folder: no video files ({', '.join(VIDEO_EXTENSIONS)}) under {folder}")
    return label_items([(v, None, None, {"caption": [os.path.splitext(os.path.basename(v))[0]]}) for v in videos],
                       folder, out_dir)


def record_row(record: Any) -> dict[str, Any]:
    """What an annotation record says besides its clip: captions, or a class label."""
    if getattr(record, "captions", None):
        return {"caption": list(record.captions)}
    if getattr(record, "label", None) is not None:
        return {"label": record.label}
    return {}


def source_items(source: L.LightningDataModule, split: str, out_dir: str) -> list[LabelItem]:
    """The distinct clips of a clip datamodule's split (QA repeats a clip per question; it is labelled once)."""
    if not hasattr(source, "annotation_path") or not hasattr(source, "datasets"):
        raise ValueError(f"source: {type(source).__name__} does not list its videos; give an annotation datamodule, "
                         "a folder, or (for tar shards) data.shards")
    path = source.annotation_path(split)
    if path is None:
        raise ValueError(f"source: {type(source).__name__} has no {split} split (set {split}_annotations)")
    source.setup(SPLIT_STAGES[split])
    # Annotation paths are relative to the datamodule's root, else to the annotation file's folder (always for
    # the synthetic set).
    root = None if getattr(source, "synthetic", False) else getattr(source, "root", None)
    root = root or os.path.dirname(os.path.abspath(path))
    seen = {}
    for rec in source.datasets[split].records:  # one file named two ways is one video; a clip from 0, from the start
        seen.setdefault((os.path.normpath(rec.video), rec.start_sec or None, rec.end_sec), rec)
    return label_items([(v, s, e, record_row(r)) for (v, s, e), r in seen.items()], root, out_dir)


class VideoFramesDataset(RecordDataset):
    """Whole videos of ``LabelItem``\\ s under the bad-sample policy; a done item (``LabelItem.done``: its files and
    its name in ``recorded``) is not decoded."""

    def __init__(self, items: list[LabelItem], out_dir: str, recorded: set[str], on_bad_video: OnBadSample = "skip",
                 max_frames: int | None = None) -> None:
        self.out_dir, self.recorded, self.max_frames = out_dir, recorded, max_frames
        super().__init__(items, on_bad_video)

    def record_files(self, index: int) -> list[str]:
        return [self.records[index].video]

    def origin(self, index: int) -> str | None:
        return self.records[index].video

    def load(self, index: int) -> dict[str, Any]:
        item = self.records[index]
        if item.done(self.out_dir, self.recorded):
            return {"index": index, "item": dataclasses.asdict(item), "done": True}
        frames = read_all_frames(item.video, item.start_sec, item.end_sec, self.max_frames)
        return {"index": index, "item": dataclasses.asdict(item), "frames": frames}


class ShardFramesDataset(ShardedVideoTextDataset):
    """Whole videos of tar shard samples to label, streamed as ``ShardedVideoTextDataset`` streams them (each
    rank and worker its own shards, in order; the same bad-sample policy and reports); captions are optional. A
    sample whose labels exist under ``out_dir`` and whose name is in ``recorded`` is done: its video is not
    decoded."""

    def __init__(self, shards: Shards, out_dir: str, recorded: set[str], on_bad_video: OnBadSample = "skip",
                 max_frames: int | None = None) -> None:
        super().__init__(shards, on_bad_video=on_bad_video)
        check_shard_names(self.shards)
        self.out_dir, self.recorded, self.max_frames = out_dir, recorded, max_frames

    def _loader_stage(self) -> Callable[[Iterable[tuple[int, ShardSample | ShardError]]], Iterator[dict[str, Any]]]:
        """Each bad sample (and a damaged shard's rest) becomes a hole carrying its report, as in the file data
        sets, rather than a report riding on the reader's next good sample: a labelling run counts every failure,
        also those after a reader's last good sample."""

        def load_samples(items: Iterable[tuple[int, ShardSample | ShardError]]) -> Iterator[dict[str, Any]]:
            for index, item in items:
                try:
                    if isinstance(item, ShardError):  # already counted and logged by the shard reader
                        yield {"index": index, "skipped": [self._report(index, item)], HOLE: True}
                        continue
                    yield self.load(item, index)
                except BadSampleError as e:
                    if self.on_bad_video == "raise":
                        raise
                    self._note_bad(index, e)
                    yield {"index": index, "skipped": [self._report(index, e)], HOLE: True}

        return load_samples

    def load(self, sample: ShardSample, index: int) -> dict[str, Any]:
        mask, graph = shard_label_paths(self.out_dir, sample.shard, sample.key)
        item = LabelItem(sample.name, None, None, mask, graph, {"shard": sample.shard, "key": sample.key})
        if item.done(self.out_dir, self.recorded):
            return {"index": index, "item": dataclasses.asdict(item), "done": True}
        ext = self.video_member(sample)
        frames = read_all_frames(sample.files[ext], max_frames=self.max_frames, name=f"{sample.name}.{ext}")
        return {"index": index, "item": dataclasses.asdict(item), "frames": frames}


def collate_videos(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of whole videos: the samples as a list (videos differ in size), holes left out."""
    return {"samples": [{k: v for k, v in s.items() if k != "skipped"} for s in samples if not s.get(HOLE)],
            "skipped": collate_skipped(samples)}


class PseudoLabelDataModule(L.LightningDataModule):
    """The predict data of ``trajtok pseudo-label``: the videos of ``source``'s ``split``, of ``folder``, or of
    ``shards``.

    Args:
        out_dir: where the labels go (mirroring the videos' paths below the data root), with the annotation
            file and statistics the writer adds.
        source: a clip datamodule (``VideoTextDataModule``, ``ClassificationDataModule``, ``QADataModule``) whose
            split is labelled; its annotation keys and root apply; with no annotations, its synthetic set.
        split: the split of ``source`` to label.
        folder: label every video under this folder instead (captions: the file names).
        shards: label every sample of these tar shards instead (a path or brace pattern, or a list: as
            ``ShardDataModule``'s ``*_shards``); train on them with ``ShardDataModule(pseudo_labels=out_dir)``.
            Each process (x DataLoader worker) reads whole shards: give at least as many shards as that.
        on_bad_video: "skip" reports an unreadable video and goes on; "raise" stops there.
        max_frames: a video (range) of more frames is unusable (it is decoded whole into memory).
        batch_size: videos per predict step and process.
        num_workers: DataLoader workers decoding videos ahead of the models.
    """

    def __init__(self, out_dir: str, source: L.LightningDataModule | None = None,
                 split: Literal["train", "val", "test"] = "train", folder: str | None = None,
                 shards: str | list[str] | None = None, on_bad_video: OnBadSample = "skip",
                 max_frames: PositiveInt | None = 1000, batch_size: PositiveInt = 1,
                 num_workers: NonNegativeInt = 0) -> None:
        super().__init__()
        if sum(x is not None for x in (source, folder, shards)) != 1:
            raise ValueError("give exactly one of data.source (a datamodule), data.folder (a video folder) and "
                             "data.shards (tar shards)")
        self.out_dir, self.source, self.split, self.folder, self.shards = out_dir, source, split, folder, shards
        self.on_bad_video, self.max_frames = on_bad_video, max_frames
        self.batch_size, self.num_workers = batch_size, num_workers
        self.items: list[LabelItem] = []

    def prepare_data(self) -> None:
        if self.source is not None:
            self.source.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        """The videos (not for shards: streamed, they are known as they are read), and ``out_dir`` checked
        writable: both before anything is labelled."""
        if self.shards is None and not self.items:
            self.items = (folder_items(self.folder, self.out_dir) if self.folder is not None
                          else source_items(self.source, self.split, self.out_dir))
        check_writable(self.out_dir)

    def annotation_items(self) -> list[LabelItem] | None:
        """The labelled (done) items, for the annotation file; None for shards, which train from the label folder."""
        if self.shards is not None:
            return None
        recorded = recorded_names(self.out_dir)
        return [item for item in self.items if item.done(self.out_dir, recorded)]

    def failed_name(self, report: dict[str, Any]) -> str:
        """The summary name of a skipped sample: as its labels would be named; for shards ``<shard name>/<key>``
        from the report's ``<shard>:<key>[.ext]`` path (``<shard name>`` alone for a damaged shard's rest)."""
        if self.shards is None:
            return self.items[report["index"]].name(self.out_dir)
        path = str(report["path"])
        shard = next(s for s in expand_shards(self.shards) if path == s or path.startswith(s + ":"))
        key = os.path.splitext(path[len(shard) + 1:])[0]  # a key holds no dot in its last part
        return shard_name(shard) + (f"/{key}" if key else "")

    def predict_dataloader(self) -> DataLoader:
        self.setup("predict")
        recorded = recorded_names(self.out_dir)
        if self.shards is None:
            dataset = VideoFramesDataset(self.items, self.out_dir, recorded, self.on_bad_video, self.max_frames)
            workers = self.num_workers
        else:
            dataset = ShardFramesDataset(self.shards, self.out_dir, recorded, self.on_bad_video, self.max_frames)
            world_size = dataset.distributed()[1]
            dataset.check_readers(world_size, 1)
            workers = min(self.num_workers, len(dataset.available) // world_size)  # each worker a shard at least
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=workers, collate_fn=collate_videos)
