"""Reading video annotations from JSONL, JSON (a list of rows) or CSV, and labelled class folders.

A row names a video (relative to a root folder), optional ``start``/``end`` seconds and optional
pseudo-label files (``mask``, ``graph``: per-frame instance-id masks and the trajectory graph), plus what
the video is annotated with: one caption or a list of captions (CSV: one string) for video-text data, a
``label`` (a class name, or an integer class index) for classification data, or a ``question`` with its
``answer`` and optional multiple-choice ``options`` (CSV: one cell, options separated by "|") for
question answering; QA rows of one video may repeat, one per question. Image-text rows name an
``image`` (no segment, no pseudo-labels) and its captions, as video-text rows do. Key names are
configurable (``datamodules.options.AnnotationKeys``). Extra keys are ignored. A
malformed row fails loudly with the file and row number (the first such row of the file): a silently
dropped row would shift retrieval ground truth or class counts.

Rows are read and their values checked by ``datamodules.rows``, which says how rows are numbered and what counts
as malformed. Records remember their row (``origin``, "file, row N"), so a video that later fails to decode is
reported with the row that named it.

Labelled videos can also come as class folders, ``<dir>/<class name>/**/<video>``, the layout of
UCF101-style releases.

Annotation files derived from others (the synthetic set's questions) are written with
``write_jsonl_atomic``, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from datamodules.options import AnnotationKeys
from datamodules.rows import (
    check_path,
    optional_path,
    optional_seconds,
    parse_captions,
    parse_label,
    parse_options,
    parse_rows,
    parse_text,
    require_keys,
    row_error,
)
from datamodules.video import VIDEO_EXTENSIONS
from trajtok.files import atomic_write


@dataclass(frozen=True)
class VideoTextRecord:
    """One annotated clip, with paths already joined to the root."""

    video: str
    captions: tuple[str, ...]
    start_sec: float | None = None
    end_sec: float | None = None
    mask: str | None = None
    graph: str | None = None
    # Where the row is ("file, row N"), for reports of samples that fail later; not part of equality.
    origin: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class LabelledVideoRecord:
    """One clip with a class label, with paths already joined to the root.

    ``label`` is a class name or an integer class index, as the annotation gave it: which index a name
    gets depends on the class list of the whole data set, decided later. ``origin`` says where the label
    came from ("file, row N", or the video's path for class folders), so that mapping can name it.
    """

    video: str
    label: str | int
    origin: str
    start_sec: float | None = None
    end_sec: float | None = None
    mask: str | None = None
    graph: str | None = None


#: The type of a question whose row names none: such a question counts in overall scores only.
UNTYPED = ""


@dataclass(frozen=True)
class QARecord:
    """One question about a clip, with paths already joined to the root.

    ``options`` is empty for an open-ended question; otherwise the distinct choices, of which
    ``answer`` is exactly one. ``type`` is the kind of question a row names (``datamodules.qa_motion.TYPES`` on the
    motion set), by which accuracy is also reported; ``UNTYPED`` when the row names none.
    """

    video: str
    question: str
    answer: str
    options: tuple[str, ...] = ()
    start_sec: float | None = None
    end_sec: float | None = None
    mask: str | None = None
    graph: str | None = None
    type: str = UNTYPED
    # Where the row is ("file, row N"), for reports of samples that fail later; not part of equality.
    origin: str | None = field(default=None, compare=False)

    @property
    def answer_index(self) -> int:
        """The answer's position in ``options``, or -1 for an open-ended question."""
        return self.options.index(self.answer) if self.options else -1


@dataclass(frozen=True)
class ImageTextRecord:
    """One captioned image, with its path already joined to the root."""

    image: str
    captions: tuple[str, ...]
    # Where the row is ("file, row N"), for reports of samples that fail later; not part of equality.
    origin: str | None = field(default=None, compare=False)


def _clip_fields(row: dict, keys: AnnotationKeys, root: str, path: str, row_number: int) -> dict[str, Any]:
    """What every kind of row says about its clip: the video path, the segment in seconds, and the
    pseudo-label paths, as keyword arguments of a record."""
    video = row[keys.video]
    if not isinstance(video, str) or not video:
        raise row_error(path, row_number, f"{keys.video!r} must be a non-empty path string, got {video!r}")
    check_path(video, keys.video, path, row_number)
    start = optional_seconds(row.get(keys.start), keys.start, path, row_number)
    end = optional_seconds(row.get(keys.end), keys.end, path, row_number)
    if start is not None and end is not None and end <= start:
        raise row_error(path, row_number, f"end {end} must be greater than start {start}")
    return {
        "video": os.path.join(root, video),
        "start_sec": start,
        "end_sec": end,
        "mask": optional_path(row.get(keys.mask), keys.mask, root, path, row_number),
        "graph": optional_path(row.get(keys.graph), keys.graph, root, path, row_number),
    }


def parse_row(row: Any, keys: AnnotationKeys, root: str, path: str, row_number: int) -> VideoTextRecord:
    """Validate one parsed video-text row (a dict) and turn it into a record."""
    require_keys(row, (keys.video, keys.caption), path, row_number)
    clip = _clip_fields(row, keys, root, path, row_number)
    captions = parse_captions(row[keys.caption], keys.caption, path, row_number)
    return VideoTextRecord(captions=captions, origin=f"{path}, row {row_number}", **clip)


def parse_labelled_row(
    row: Any, keys: AnnotationKeys, root: str, path: str, row_number: int, text_cells: bool = False
) -> LabelledVideoRecord:
    """Validate one parsed labelled row (a dict) and turn it into a record; ``text_cells`` (CSV): a
    label of digits is a class index."""
    require_keys(row, (keys.video, keys.label), path, row_number)
    clip = _clip_fields(row, keys, root, path, row_number)
    label = parse_label(row[keys.label], keys.label, path, row_number, text_cells)
    return LabelledVideoRecord(label=label, origin=f"{path}, row {row_number}", **clip)


def parse_qa_row(
    row: Any, keys: AnnotationKeys, root: str, path: str, row_number: int, text_cells: bool = False
) -> QARecord:
    """Validate one parsed QA row (a dict) and turn it into a record; ``text_cells`` (CSV): options come
    as one string separated by "|"."""
    require_keys(row, (keys.video, keys.question, keys.answer), path, row_number)
    clip = _clip_fields(row, keys, root, path, row_number)
    question = parse_text(row[keys.question], keys.question, path, row_number)
    answer = parse_text(row[keys.answer], keys.answer, path, row_number)
    options = parse_options(row.get(keys.options), keys.options, path, row_number, text_cells)
    if options and answer not in options:
        raise row_error(path, row_number, f"{keys.answer!r} {answer!r} is not one of the options {list(options)}")
    kind = row.get(keys.type)
    kind = UNTYPED if kind in (None, "") else parse_text(kind, keys.type, path, row_number)
    return QARecord(question=question, answer=answer, options=options, type=kind, origin=f"{path}, row {row_number}",
                    **clip)


def parse_image_row(row: Any, keys: AnnotationKeys, root: str, path: str, row_number: int) -> ImageTextRecord:
    """Validate one parsed image-text row (a dict) and turn it into a record."""
    require_keys(row, (keys.image, keys.caption), path, row_number)
    image = row[keys.image]
    if not isinstance(image, str) or not image:
        raise row_error(path, row_number, f"{keys.image!r} must be a non-empty path string, got {image!r}")
    check_path(image, keys.image, path, row_number)
    captions = parse_captions(row[keys.caption], keys.caption, path, row_number)
    return ImageTextRecord(os.path.join(root, image), captions, origin=f"{path}, row {row_number}")


def _root(path: str, root: str | None) -> str:
    """The folder relative paths of an annotation file start from: ``root``, else the file's own folder."""
    return os.path.dirname(os.path.abspath(path)) if root is None else str(root)


def read_video_text_annotations(
    path: str, root: str | None = None, keys: AnnotationKeys = AnnotationKeys()
) -> list[VideoTextRecord]:
    """Read every row of a JSONL / JSON / CSV annotation file (format from the extension).

    ``root`` is the folder video and pseudo-label paths are relative to; by default the annotation
    file's own folder. Raises ValueError naming the file and row for any malformed row.
    """
    path = str(path)
    root = _root(path, root)
    return parse_rows(path, lambda row, number: parse_row(row, keys, root, path, number))


def read_image_text_annotations(
    path: str, root: str | None = None, keys: AnnotationKeys = AnnotationKeys()
) -> list[ImageTextRecord]:
    """Captioned images from a JSONL / JSON / CSV file (format from the extension), one per row: an image
    path (relative to ``root``, by default the file's own folder) and one caption or a list of them.
    Raises ValueError naming the file and row for any malformed row."""
    path = str(path)
    root = _root(path, root)
    return parse_rows(path, lambda row, number: parse_image_row(row, keys, root, path, number))


def read_qa_annotations(path: str, root: str | None = None, keys: AnnotationKeys = AnnotationKeys()) -> list[QARecord]:
    """Questions about videos from a JSONL / JSON / CSV file (format from the extension), one per row.

    ``root`` is the folder video paths are relative to; by default the annotation file's own folder. In
    CSV the options are one cell separated by "|"; in JSON they are a list. Raises ValueError naming the
    file and row for any malformed row, including an answer that is not one of its options.
    """
    path = str(path)
    root = _root(path, root)
    text_cells = path.lower().endswith(".csv")
    return parse_rows(path, lambda row, number: parse_qa_row(row, keys, root, path, number, text_cells))


def write_jsonl_atomic(path: str, rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` as JSONL, whole or not at all (``trajtok.files.atomic_write``), so a process reading ``path``
    while another rewrites it sees a whole file, old or new."""
    with atomic_write(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def read_class_folders(path: str) -> list[LabelledVideoRecord]:
    """Every video file (``datamodules.video.VIDEO_EXTENSIONS``, at any depth) under each subfolder of ``path``,
    labelled with that subfolder's name; sorted, so the order is the same on every machine. Other files (notes,
    pseudo-label .npz files) are not samples.

    Hidden entries (".ipynb_checkpoints") are not classes or samples. A video directly in ``path`` has
    no class, which means a layout mistake: ValueError naming it.
    """
    entries = sorted(e for e in os.listdir(path) if not e.startswith("."))
    stray = [e for e in entries if e.lower().endswith(VIDEO_EXTENSIONS) and os.path.isfile(os.path.join(path, e))]
    if stray:
        raise ValueError(f"{os.path.join(path, stray[0])}: a video outside any class folder of {path}")
    records = []
    for name in (e for e in entries if os.path.isdir(os.path.join(path, e))):
        for folder, subfolders, files in os.walk(os.path.join(path, name)):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for file in sorted(files):
                if file.lower().endswith(VIDEO_EXTENSIONS) and not file.startswith("."):
                    video = os.path.join(folder, file)
                    records.append(LabelledVideoRecord(video=video, label=name, origin=video))
    if not records:
        raise ValueError(f"{path}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in class folders")
    return records


def read_labelled_annotations(
    path: str, root: str | None = None, keys: AnnotationKeys = AnnotationKeys()
) -> list[LabelledVideoRecord]:
    """Labelled videos from a JSONL / JSON / CSV file, or from class folders when ``path`` is a folder.

    ``root`` (files only) is the folder video and pseudo-label paths are relative to; by default the
    annotation file's own folder. In CSV a label of digits is a class index (cells are text); in JSON it
    is one when it is a JSON integer. Raises ValueError naming the file and row for any malformed row.
    """
    path = str(path)
    if os.path.isdir(path):
        return read_class_folders(path)
    root = _root(path, root)
    text_cells = path.lower().endswith(".csv")
    return parse_rows(path, lambda row, number: parse_labelled_row(row, keys, root, path, number, text_cells))
