"""Video classification data: the class list, the per-sample dataset, its collate function, and the
LightningDataModule.

Labelled videos come from JSONL / JSON / CSV rows or class folders (``annotations``). A label is a class
name or an integer class index; the class list that turns names into indices is fixed by the user, by a
checkpoint, or else taken from the train split, and travels in checkpoints (``state_dict``) because label
indices mean nothing without it.

With no annotation files the datamodule serves the embedded synthetic shapes set labelled by a task
computed from each clip's objects ("moving": how many objects move; "count": how many there are). The
labels are written as annotation files beside the set, so they are read by exactly the same path as real
data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import torch
from jsonargparse.typing import NonNegativeInt

from datamodules.annotations import (
    LabelledVideoRecord,
    read_labelled_annotations,
    write_jsonl_atomic,
)
from datamodules.bad_samples import OnBadSample
from datamodules.base import ClipDataModule
from datamodules.clips import ClipDataset
from datamodules.collate import collate_pseudo_labels, collate_skipped, drops_skipped
from datamodules.options import (
    AnnotationKeys,
    ClipOptions,
    LoaderOptions,
    SyntheticOptions,
)
from datamodules.rows import json_rows, jsonl_rows, read_utf8
from datamodules.synthetic import SPLITS

SyntheticTask = Literal["moving", "count"]
# Fixed lists rather than the names found in the train split: a class index then means the same thing
# whatever counts a generated split happens to contain.
SYNTHETIC_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "moving": ("no object moves", "one object moves", "two objects move", "three objects move"),
    "count": ("one object", "two objects", "three objects"),
}


def synthetic_label(task: str, objects: Sequence[dict[str, Any]]) -> str:
    """The class name of a synthetic clip for ``task``, from its annotation row's ``objects``."""
    index = {"moving": sum(o["motion"] != "still" for o in objects), "count": len(objects) - 1}[task]
    return SYNTHETIC_CLASS_NAMES[task][index]


def synthetic_label_path(folder: str, split: str, task: str) -> str:
    """Where the labels of a synthetic split for a task are: beside the split's own annotations."""
    return os.path.join(folder, f"{split}_{task}.jsonl")


def write_synthetic_labels(folder: str, task: str) -> dict[str, str]:
    """Write ``<split>_<task>.jsonl`` for every split of the synthetic set in ``folder``: rows of ``video``,
    ``label`` (the class name), ``mask`` and ``graph``. Each file is written to a temporary name and
    renamed into place, so a process reading it while another rewrites it sees a whole file. Returns
    each split's path."""
    paths = {}
    for split in SPLITS:
        rows = [
            {"video": r["video"], "label": synthetic_label(task, r["objects"]), "mask": r["mask"], "graph": r["graph"]}
            for _, r in jsonl_rows(os.path.join(folder, f"{split}.jsonl"))
        ]
        path = synthetic_label_path(folder, split, task)
        write_jsonl_atomic(path, rows)
        paths[split] = path
    return paths


def load_class_names(names: Sequence[str] | str) -> list[str]:
    """A class list from a list of names, or from a file: ``.txt`` with one name per line (blank lines
    ignored) or ``.json`` holding a list of names. Names are stripped; blank, non-string or repeated
    names raise ValueError naming where they are."""
    if isinstance(names, str):
        path = names
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".txt", ".json"):
            raise ValueError(f"{path}: class_names file must be .txt (one name per line) or .json (a list)")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"class names file not found: {path}")
        if ext == ".json":
            entries = [(f"{path}, row {n}", name) for n, name in json_rows(path)]
        else:
            lines = read_utf8(path).splitlines()
            entries = [(f"{path}, row {n}", line) for n, line in enumerate(lines, start=1) if line.strip()]
        source = path
    else:
        entries = [(f"class_names[{i}]", name) for i, name in enumerate(names)]
        source = "class_names"
    out: list[str] = []
    first_seen: dict[str, str] = {}
    for where, name in entries:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: a class name must be a non-blank string, got {name!r}")
        name = name.strip()
        if name in first_seen:
            raise ValueError(f"{where}: class name {name!r} repeats {first_seen[name]}")
        first_seen[name] = where
        out.append(name)
    if not out:
        raise ValueError(f"{source}: no class names")
    return out


def class_names_from_labels(
    train: Sequence[LabelledVideoRecord], every: Sequence[LabelledVideoRecord]
) -> list[str]:
    """The class list when none is given: the sorted names of ``train``, or, when labels are integer
    indices, ``"0"`` .. ``"N-1"`` with ``N`` one more than the largest index in ``every`` split.

    Names and indices mixed raise ValueError: which index a name would get is then a guess.
    """
    first = every[0]
    indices = isinstance(first.label, int)
    mixed = next((r for r in every if isinstance(r.label, int) != indices), None)
    if mixed is not None:
        raise ValueError(
            f"{mixed.origin}: label {mixed.label!r} is a {'class name' if indices else 'class index'}, but "
            f"{first.origin} has a {'class index' if indices else 'class name'}; give class_names to mix them"
        )
    if indices:
        return [str(i) for i in range(max(r.label for r in every) + 1)]
    return sorted({r.label for r in train})


def _preview(names: Sequence[str], limit: int = 10) -> str:
    """The first few names, for error messages about long class lists."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def encode_labels(records: Sequence[LabelledVideoRecord], class_names: Sequence[str]) -> list[int]:
    """Each record's class index in ``class_names``; ValueError naming the file and row of a label that
    is not a known name or is an index out of range."""
    lookup = {name: i for i, name in enumerate(class_names)}
    out = []
    for r in records:
        if isinstance(r.label, int):
            if r.label >= len(class_names):
                raise ValueError(f"{r.origin}: class index {r.label} is out of range for {len(class_names)} classes")
            out.append(r.label)
        elif r.label in lookup:
            out.append(lookup[r.label])
        else:
            raise ValueError(f"{r.origin}: unknown class {r.label!r}; the classes are {_preview(class_names)}")
    return out


class ClassificationDataset(ClipDataset):
    """Clips of labelled videos, as dicts: ``video`` float ``(T, 3, S, S)``, ``label`` (the class index
    in ``class_names``), ``index``; plus ``mask`` uint8 ``(T, S, S)`` and ``graph`` int64 ``(M, T)`` when
    pseudo-labels are loaded.

    Labels are checked against ``class_names`` here, before any decoding. Unusable videos are skipped (a
    skipped sample's label goes with it) or raised as ``ClipDataset`` says (``on_bad_video``,
    ``num_skipped``, ``skipped_paths``).
    """

    records: list[LabelledVideoRecord]

    def __init__(
        self,
        records: Sequence[LabelledVideoRecord],
        class_names: Sequence[str],
        clip: ClipOptions = ClipOptions(),
        train: bool = False,
        on_bad_video: OnBadSample = "skip",
        load_pseudo_labels: bool = False,
        max_reported: NonNegativeInt = 10,
    ) -> None:
        super().__init__(records, clip, train, on_bad_video, load_pseudo_labels, max_reported)
        self.class_names = list(class_names)
        self.labels = encode_labels(self.records, self.class_names)

    def load(self, index: int) -> dict[str, Any]:
        """One sample, or a ``BadSampleError`` naming the file that prevents it."""
        return {**self.load_clip(self.records[index]), "label": self.labels[index], "index": index}


@drops_skipped
def collate_classification(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into the batch of the data contract (see ``datamodules``): ``video``, ``label``,
    ``index`` and ``skipped``, plus ``mask`` / ``graph`` as for video-text batches."""
    return {
        "video": torch.stack([s["video"] for s in samples]),
        "label": torch.tensor([s["label"] for s in samples], dtype=torch.long),
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "skipped": collate_skipped(samples),
        **collate_pseudo_labels(samples),
    }


class ClassificationDataModule(ClipDataModule):
    """Video classification data from annotation files or class folders, or the synthetic default.

    The class list (``class_names``, ``num_classes``) is, in order of precedence: the ``class_names``
    argument; the synthetic task's fixed list; one restored from a checkpoint (``load_state_dict``, which
    refuses a list that differs from one already set); else the train split's sorted class names
    (integer labels: ``"0"`` .. ``"N-1"``, N one more than the largest index of any split; no train
    split: the names of the splits given). ``resolve_class_names`` computes it on demand.

    Args:
        root: folder that video (and pseudo-label) paths in annotation files are relative to; default:
            each annotation file's own folder. Class folders use their own paths.
        train_annotations: JSONL / JSON / CSV file, or class folder (``<dir>/<class name>/<video>``, any of
            ``datamodules.video.VIDEO_EXTENSIONS``), of the train split. When no split has one, the embedded
            synthetic set is used (see ``synthetic`` and ``synthetic_task``).
        val_annotations: the val split's file or folder; None: no validation.
        test_annotations: the test split's file or folder (predict uses it too).
        class_names: the class list, as names or a .txt (one per line) / .json (a list) file; labels may
            then be names or indices into it, and val / test rows must map into it.
        clip: frames per clip, input size and training augmentation (a class may depend on direction,
            "moving left": keep ``horizontal_flip`` off then).
        loader: batch sizes and DataLoader workers.
        on_bad_video: "skip" leaves unusable samples out of their batch (which shrinks) and reports them
            in its ``skipped`` (``trajtok.callbacks.BadSampleReport`` logs them per epoch); "raise" fails with
            the file's path and annotation row.
        load_pseudo_labels: add ``mask`` / ``graph`` to batches when the annotations name those files (the
            synthetic set does); off by default, since a classifier alone does not use them.
        keys: the annotation files' key names (``video``, ``label``, ``start``, ``end``, ``mask``, ``graph``;
            files only, not class folders).
        synthetic: the synthetic set used when no annotations are given.
        synthetic_task: the synthetic labels: "moving" (how many objects move, 4 classes) or "count" (how
            many objects there are, 3 classes).
    """

    collate_fn = staticmethod(collate_classification)

    def __init__(
        self,
        root: str | None = None,
        train_annotations: str | None = None,
        val_annotations: str | None = None,
        test_annotations: str | None = None,
        class_names: list[str] | str | None = None,
        clip: ClipOptions = ClipOptions(),
        loader: LoaderOptions = LoaderOptions(),
        on_bad_video: OnBadSample = "skip",
        load_pseudo_labels: bool = False,
        keys: AnnotationKeys = AnnotationKeys(),
        synthetic: SyntheticOptions = SyntheticOptions(),
        synthetic_task: SyntheticTask = "moving",
    ) -> None:
        super().__init__(root=root, annotations=(train_annotations, val_annotations, test_annotations), clip=clip,
                         loader=loader, keys=keys, synthetic=synthetic)
        self.save_hyperparameters()
        self.on_bad_video = on_bad_video
        if synthetic_task not in SYNTHETIC_CLASS_NAMES:
            raise ValueError(f"synthetic_task must be one of {sorted(SYNTHETIC_CLASS_NAMES)}, got {synthetic_task!r}")
        self.synthetic_task = synthetic_task
        self.load_pseudo_labels = load_pseudo_labels
        self._class_names: list[str] | None = None
        if class_names is not None:
            self._class_names = load_class_names(class_names)
        elif self.synthetic:
            self._class_names = list(SYNTHETIC_CLASS_NAMES[synthetic_task])
        self._records: dict[str, list[LabelledVideoRecord]] = {}

    def prepare_data(self) -> None:
        """Generate the synthetic set if it is used and missing and (re)write its task labels; settle the
        class list, so a bad annotation file fails before training starts."""
        if self.synthetic:
            write_synthetic_labels(self.synthetic_folder(), self.synthetic_task)
        self.resolve_class_names()

    def annotation_path(self, split: str) -> str | None:
        """The annotations of a split: a file or class folder, or for the synthetic set its task labels."""
        if not self.synthetic:
            return self.annotations[split]
        folder = self.synthetic_folder()
        path = synthetic_label_path(folder, split, self.synthetic_task)
        if not os.path.isfile(path):  # setup without prepare_data, as in a plain script
            write_synthetic_labels(folder, self.synthetic_task)
        return path

    def records(self, split: str) -> list[LabelledVideoRecord]:
        """The labelled records of a split that has annotations (read once: both the class list and the
        dataset need them)."""
        if split not in self._records:
            path = self.annotation_path(split)
            if path is None:
                raise ValueError(f"no {split} data: set {split}_annotations")
            self._records[split] = read_labelled_annotations(path, *self.reading())
        return self._records[split]

    def resolve_class_names(self) -> list[str]:
        """The class list (see the class docstring), reading the annotations when it comes from them."""
        if self._class_names is None:
            splits = [s for s in SPLITS if self.annotation_path(s) is not None]
            every = [r for s in splits for r in self.records(s)]
            train = self.records("train") if "train" in splits else every
            self._class_names = class_names_from_labels(train, every)
        return list(self._class_names)

    @property
    def class_names(self) -> list[str]:
        """The class list: ``label`` ``i`` of a batch is ``class_names[i]``."""
        return self.resolve_class_names()

    @property
    def num_classes(self) -> int:
        return len(self.resolve_class_names())

    def build_dataset(self, split: str, path: str) -> ClassificationDataset:
        return ClassificationDataset(
            self.records(split),
            self.resolve_class_names(),
            self.clip,
            train=split == "train",
            on_bad_video=self.on_bad_video,
            load_pseudo_labels=self.load_pseudo_labels,
        )

    def state_dict(self) -> dict[str, Any]:
        """The class list, which Lightning stores in checkpoints: a model's outputs follow its order."""
        return {"class_names": self.resolve_class_names()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Adopt a checkpoint's class list; ValueError when a different one is already set (given, or
        used by the datasets), since the checkpoint's outputs would then name the wrong classes."""
        names = load_class_names(list(state_dict["class_names"]))
        if self._class_names is not None and self._class_names != names:
            raise ValueError(
                f"the checkpoint's {len(names)} class names differ from this datamodule's {len(self._class_names)}: "
                f"checkpoint {names}, datamodule {self._class_names}"
            )
        self._class_names = names
