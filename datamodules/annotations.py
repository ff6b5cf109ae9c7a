"""Reading video annotations from JSONL, JSON (a list of rows) or CSV, and labelled class folders.

A row names a video (relative to a root folder), optional ``start``/``end`` seconds and optional
pseudo-label files (``mask``, ``graph``: per-frame instance-id masks and the trajectory graph), plus what
the video is annotated with: one caption or a list of captions (CSV: one string) for video-text data, a
``label`` (a class name, or an integer class index) for classification data, or a ``question`` with its
``answer`` and optional multiple-choice ``options`` (CSV: one cell, options separated by "|") for
question answering; QA rows of one video may repeat, one per question. Image-text rows name an
``image`` (no segment, no pseudo-labels) and its captions, as video-text rows do. Key names are
configurable, so public data sets' own files can be read without conversion. Extra keys are ignored. A
malformed row fails loudly with the file and row number (the first such row of the file): a silently
dropped row would shift retrieval ground truth or class counts.

Row numbers are 1-based line numbers for JSONL and CSV (the CSV header is line 1; a CSV row spanning lines
is numbered by its first) and 1-based positions in the list for JSON. Records remember theirs (``origin``, "file, row N"), so a video that later fails to
decode is reported with the row that named it.

What counts as malformed, besides missing keys and wrong types: bytes that are not UTF-8, a JSON object
with a key twice, a CSV header with a column twice or a quoted cell left open, non-finite or negative
seconds, a NUL character in a path or text, and text that cannot be written as UTF-8 (a lone surrogate
from a ``\ud800`` escape), which would only fail later in a tokenizer.

Labelled videos can also come as class folders, ``<dir>/<class name>/**/<video>``, the layout of
UCF101-style releases.

Annotation files derived from others (the synthetic set's questions) are written with
``write_jsonl_atomic``, so a reader never sees a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class QARecord:
    """One question about a clip, with paths already joined to the root.

    ``options`` is empty for an open-ended question; otherwise the distinct choices, of which
    ``answer`` is exactly one.
    """

    video: str
    question: str
    answer: str
    options: tuple[str, ...] = ()
    start_sec: float | None = None
    end_sec: float | None = None
    mask: str | None = None
    graph: str | None = None
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


@dataclass(frozen=True)
class AnnotationKeys:
    """Column / key names of an annotation file (``caption`` for video-text rows, ``label`` for labelled
    rows, ``question`` / ``answer`` / ``options`` for QA rows; the other kinds' keys are unused)."""

    video: str = "video"
    caption: str = "caption"
    start: str = "start"
    end: str = "end"
    mask: str = "mask"
    graph: str = "graph"
    label: str = "label"
    question: str = "question"
    answer: str = "answer"
    options: str = "options"


# Video files of class folders; everything else there (notes, pseudo-label .npz files) is not a sample.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
# CSV cells are text, so an integer class index arrives as digits.
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _fail(path: str, row: int, reason: str) -> ValueError:
    return ValueError(f"{path}, row {row}: {reason}")


def _unusable_text(value: str) -> str | None:
    """Why a string from a file cannot be used as text or a path (None when it can): a NUL character
    (often a UTF-16 file read as UTF-8), or a lone surrogate, which no UTF-8 consumer accepts."""
    if "\x00" in value:
        return "holds a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate (not encodable as UTF-8)"
    return None


def _optional_seconds(value: Any, key: str, path: str, row: int) -> float | None:
    """A number of seconds, or None for absent / empty (CSV cells are strings)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _fail(path, row, f"{key!r} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError) as e:  # OverflowError: an integer beyond float range
        raise _fail(path, row, f"{key!r} must be a number of seconds, got {value!r}") from e
    if not seconds >= 0:  # also rejects NaN
        raise _fail(path, row, f"{key!r} must be >= 0, got {value!r}")
    if math.isinf(seconds):
        raise _fail(path, row, f"{key!r} must be a finite number of seconds, got {value!r}")
    return seconds


def _optional_path(value: Any, key: str, root: str, path: str, row: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _fail(path, row, f"{key!r} must be a path string, got {type(value).__name__}")
    _check_path(value, key, path, row)
    return os.path.join(root, value)


def _check_path(value: str, key: str, path: str, row: int) -> None:
    if not value.strip():
        raise _fail(path, row, f"{key!r} is a blank path")
    problem = _unusable_text(value)
    if problem:
        raise _fail(path, row, f"{key!r} {problem}: {value!r}")


def _captions(value: Any, key: str, path: str, row: int) -> tuple[str, ...]:
    """One caption or a non-empty list of them; every caption a non-blank string."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _fail(path, row, f"{key!r} must be a string or a non-empty list of strings, got {value!r}")
    for c in value:
        if not isinstance(c, str) or not c.strip():
            raise _fail(path, row, f"{key!r} holds a blank or non-string caption: {c!r}")
        problem = _unusable_text(c)
        if problem:
            raise _fail(path, row, f"{key!r} {problem}: {c!r}")
    return tuple(c.strip() for c in value)


def _label(value: Any, key: str, path: str, row: int, text_cells: bool) -> str | int:
    """A non-blank class name (stripped) or a class index >= 0; ``text_cells``: digits are an index."""
    if text_cells and isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        try:
            value = int(value)
        except ValueError as e:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise _fail(path, row, f"{key!r} is not a usable class index: {len(value.strip())} digits") from e
    # bool is an int subclass, but true/false in a label column is a mistake, not class 1/0.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _fail(path, row, f"{key!r} must be a class name or an integer class index, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise _fail(path, row, f"{key!r} must be a class index >= 0, got {value}")
        return value
    if not value.strip():
        raise _fail(path, row, f"{key!r} is a blank class name")
    problem = _unusable_text(value)
    if problem:
        raise _fail(path, row, f"{key!r} {problem}: {value!r}")
    return value.strip()


def _text(value: Any, key: str, path: str, row: int) -> str:
    """A non-blank string, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, row, f"{key!r} must be a non-blank string, got {value!r}")
    problem = _unusable_text(value)
    if problem:
        raise _fail(path, row, f"{key!r} {problem}: {value!r}")
    return value.strip()


def _options(value: Any, key: str, path: str, row: int, text_cells: bool) -> tuple[str, ...]:
    """Multiple-choice options: absent, null, "" or [] for none, else at least 2 distinct non-blank
    strings (stripped); ``text_cells`` (CSV): one string of options separated by "|"."""
    if value is None or value == "" or value == []:
        return ()
    if text_cells and isinstance(value, str):
        value = value.split("|")
    if not isinstance(value, list):
        raise _fail(path, row, f"{key!r} must be a list of strings, got {value!r}")
    for o in value:
        if not isinstance(o, str) or not o.strip():
            raise _fail(path, row, f"{key!r} holds a blank or non-string option: {o!r}")
        problem = _unusable_text(o)
        if problem:
            raise _fail(path, row, f"{key!r} {problem}: {o!r}")
    options = tuple(o.strip() for o in value)
    repeated = next((o for i, o in enumerate(options) if o in options[:i]), None)
    if repeated is not None:
        # The answer's position would be ambiguous.
        raise _fail(path, row, f"{key!r} repeats {repeated!r}")
    if len(options) < 2:
        raise _fail(path, row, f"{key!r} must hold at least 2 distinct options, got {list(options)}")
    return options


def _require(row: Any, required: tuple[str, ...], path: str, row_number: int) -> None:
    """The row is an object and has every required key (null counts as missing)."""
    if not isinstance(row, dict):
        raise _fail(path, row_number, f"expected an object with keys, got {type(row).__name__}")
    for key in required:
        if key not in row or row[key] is None:
            raise _fail(path, row_number, f"missing key {key!r} (has {sorted(row)})")


def _clip_fields(row: dict, keys: AnnotationKeys, root: str, path: str, row_number: int) -> dict[str, Any]:
    """What every kind of row says about its clip: the video path, the segment in seconds, and the
    pseudo-label paths, as keyword arguments of a record."""
    video = row[keys.video]
    if not isinstance(video, str) or not video:
        raise _fail(path, row_number, f"{keys.video!r} must be a non-empty path string, got {video!r}")
    _check_path(video, keys.video, path, row_number)
    start = _optional_seconds(row.get(keys.start), keys.start, path, row_number)
    end = _optional_seconds(row.get(keys.end), keys.end, path, row_number)
    if start is not None and end is not None and end <= start:
        raise _fail(path, row_number, f"end {end} must be greater than start {start}")
    return {
        "video": os.path.join(root, video),
        "start_sec": start,
        "end_sec": end,
        "mask": _optional_path(row.get(keys.mask), keys.mask, root, path, row_number),
        "graph": _optional_path(row.get(keys.graph), keys.graph, root, path, row_number),
    }


def parse_row(row: Any, keys: AnnotationKeys, root: str, path: str, row_number: int) -> VideoTextRecord:
    """Validate one parsed video-text row (a dict) and turn it into a record."""
    _require(row, (keys.video, keys.caption), path, row_number)
    clip = _clip_fields(row, keys, root, path, row_number)
    captions = _captions(row[keys.caption], keys.caption, path, row_number)
    return VideoTextRecord(captions=captions, origin=f"{path}, row {row_number}", **clip)


def parse_labelled_row(
    row: Any, keys: AnnotationKeys, root: str, path: str, row_number: int, text_cells: bool = False
) -> LabelledVideoRecord:
    """Validate one parsed labelled row (a dict) and turn it into a record; ``text_cells`` (CSV): a
    label of digits is a class index."""
    _require(row, (keys.video, keys.label), path, row_number)
    clip = _clip_fields(row, keys, root, path, row_number)
    label = _label(row[keys.label], keys.label, path, row_number, text_cells)
    return LabelledVideoRecord(label=label, origin=f"{path}, row {row_number}", **clip)


def parse_qa_row(
    row: Any, keys: AnnotationKeys, root: str, path: str, row_number: int, text_cells: bool = False
) -> QARecord:
    """Validate one parsed QA row (a dict) and turn it into a record; ``text_cells`` (CSV): options come
    as one string separated by "|"."""
    _require(row, (keys.video, keys.question, keys.answer), path, row_number)
    clip = _clip_fields(row, keys, root, path, row_number)
    question = _text(row[keys.question], keys.question, path, row_number)
    answer = _text(row[keys.answer], keys.answer, path, row_number)
    options = _options(row.get(keys.options), keys.options, path, row_number, text_cells)
    if options and answer not in options:
        raise _fail(path, row_number, f"{keys.answer!r} {answer!r} is not one of the options {list(options)}")
    return QARecord(question=question, answer=answer, options=options, origin=f"{path}, row {row_number}", **clip)


def parse_image_row(row: Any, image_key: str, caption_key: str, root: str, path: str, row_number: int) -> ImageTextRecord:
    """Validate one parsed image-text row (a dict) and turn it into a record."""
    _require(row, (image_key, caption_key), path, row_number)
    image = row[image_key]
    if not isinstance(image, str) or not image:
        raise _fail(path, row_number, f"{image_key!r} must be a non-empty path string, got {image!r}")
    _check_path(image, image_key, path, row_number)
    captions = _captions(row[caption_key], caption_key, path, row_number)
    return ImageTextRecord(os.path.join(root, image), captions, origin=f"{path}, row {row_number}")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that names each key once (``json`` would otherwise keep the last silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _loads(text: str) -> Any:
    """``json.loads`` refusing repeated keys; ValueError (JSONDecodeError among them) for anything wrong,
    including integers with more digits than Python converts."""
    return json.loads(text, object_pairs_hook=_object)


def _jsonl_rows(path: str) -> list[tuple[int, Any]]:
    """(line number, parsed object) for every non-blank line; decoding errors name their line."""
    return list(_iter_jsonl(path))


def _iter_jsonl(path: str) -> Iterator[tuple[int, Any]]:
    """``_jsonl_rows`` one line at a time, so a caller checking rows as they come reports the first bad
    row of the file, whether its JSON or its content is wrong."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise _fail(path, number, f"not valid UTF-8: {e}") from e
            if not line.strip():
                continue
            try:
                row = _loads(line)
            except ValueError as e:  # JSONDecodeError, a repeated key, an integer too long to convert
                raise _fail(path, number, f"not valid JSON: {e}") from e
            yield number, row


def _read_utf8(path: str) -> str:
    """The whole file as text; a decoding error names the line it is on."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _fail(path, raw[: e.start].count(b"\n") + 1, f"not valid UTF-8: {e}") from e


def _json_rows(path: str) -> list[tuple[int, Any]]:
    """(position, row) for a file holding one JSON list of rows."""
    text = _read_utf8(path)
    try:
        data = _loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON at line {e.lineno}: {e.msg}") from e
    except ValueError as e:  # a repeated key, an integer too long to convert: no position to give
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, list):
        # A malformed file, like every other one here: ValueError, not TypeError.
        raise ValueError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")  # noqa: TRY004
    return list(enumerate(data, start=1))


def _csv_rows(path: str) -> list[tuple[int, Any]]:
    """(line number, row dict) for every data row of a CSV with a header line (see ``_iter_csv``)."""
    return list(_iter_csv(path))


def _iter_csv(path: str) -> Iterator[tuple[int, Any]]:
    """(line number, row dict) for every data row of a CSV with a header line, one at a time; a row's
    number is the line it starts on (a quoted cell may span lines). Blank lines are skipped. The file is
    decoded whole first, so a non-UTF-8 byte anywhere fails before any row.

    Strict quoting: a quote left open would otherwise swallow every following line into one cell,
    silently merging rows. Errors of the csv module name the line the failing row starts on.
    """
    text = _read_utf8(path)
    # csv counts a line per line read, and gives a blank line as its own empty record, so a record starts
    # on the line after the previous record's last.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    ended = 0
    try:
        for record in reader:
            start, ended = ended + 1, reader.line_num
            if not record:
                continue
            if header is None:
                header = record
                repeated = next((f for i, f in enumerate(header) if f in header[:i]), None)
                if repeated is not None:
                    raise _fail(path, start, f"column {repeated!r} appears twice in the header")
                continue
            if len(record) != len(header):
                raise _fail(path, start, f"expected {len(header)} columns as in the header, got {len(record)}")
            yield start, dict(zip(header, record))
    except csv.Error as e:  # an open quote at the end, text after a closing quote, a huge field
        raise _fail(path, ended + 1, f"not valid CSV: {e}") from e


READERS = {".jsonl": _iter_jsonl, ".json": _json_rows, ".csv": _iter_csv}


def iter_rows(path: str) -> Iterable[tuple[int, Any]]:
    """(row number, parsed row) of a JSONL / JSON / CSV file (format from the extension), as they are read
    (JSONL and CSV; a JSON list is parsed whole); an unknown format or missing file fails at once."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in READERS:
        raise ValueError(f"{path}: unknown annotation format {ext!r}; use one of {sorted(READERS)}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    return READERS[ext](path)


def read_rows(path: str) -> list[tuple[int, Any]]:
    """(row number, parsed row) of a JSONL / JSON / CSV file (format from the extension); at least one."""
    rows = list(iter_rows(path))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _parse_rows(path: str, parse: Callable[[Any, int], Any]) -> list[Any]:
    """``parse(row, number)`` of every row as it is read, so the error raised is the file's first bad row
    (for CSV, a non-UTF-8 byte anywhere comes first); at least one row."""
    records = [parse(row, number) for number, row in iter_rows(path)]
    if not records:
        raise ValueError(f"{path}: no rows")
    return records


def _root(path: str, root: str | None) -> str:
    """The folder relative paths of an annotation file start from: ``root``, else the file's own folder."""
    return os.path.dirname(os.path.abspath(path)) if root is None else str(root)


def read_video_text_annotations(
    path: str, root: str | None = None, keys: AnnotationKeys | None = None
) -> list[VideoTextRecord]:
    """Read every row of a JSONL / JSON / CSV annotation file (format from the extension).

    ``root`` is the folder video and pseudo-label paths are relative to; by default the annotation
    file's own folder. Raises ValueError naming the file and row for any malformed row.
    """
    path = str(path)
    keys, root = keys or AnnotationKeys(), _root(path, root)
    return _parse_rows(path, lambda row, number: parse_row(row, keys, root, path, number))


def read_image_text_annotations(
    path: str, root: str | None = None, image_key: str = "image", caption_key: str = "caption"
) -> list[ImageTextRecord]:
    """Captioned images from a JSONL / JSON / CSV file (format from the extension), one per row: an image
    path (relative to ``root``, by default the file's own folder) and one caption or a list of them.
    Raises ValueError naming the file and row for any malformed row."""
    path = str(path)
    root = _root(path, root)
    return _parse_rows(path, lambda row, number: parse_image_row(row, image_key, caption_key, root, path, number))


def read_qa_annotations(path: str, root: str | None = None, keys: AnnotationKeys | None = None) -> list[QARecord]:
    """Questions about videos from a JSONL / JSON / CSV file (format from the extension), one per row.

    ``root`` is the folder video paths are relative to; by default the annotation file's own folder. In
    CSV the options are one cell separated by "|"; in JSON they are a list. Raises ValueError naming the
    file and row for any malformed row, including an answer that is not one of its options.
    """
    path = str(path)
    keys, root = keys or AnnotationKeys(), _root(path, root)
    text_cells = path.lower().endswith(".csv")
    return _parse_rows(path, lambda row, number: parse_qa_row(row, keys, root, path, number, text_cells))


def write_jsonl_atomic(path: str, rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` as JSONL, whole or not at all (``trajtok.files.atomic_write``), so a process reading ``path``
    while another rewrites it sees a whole file, old or new."""
    with atomic_write(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def read_class_folders(path: str) -> list[LabelledVideoRecord]:
    """Every video file (``VIDEO_EXTENSIONS``, at any depth) under each subfolder of ``path``, labelled
    with that subfolder's name; sorted, so the order is the same on every machine.

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
    path: str, root: str | None = None, keys: AnnotationKeys | None = None
) -> list[LabelledVideoRecord]:
    """Labelled videos from a JSONL / JSON / CSV file, or from class folders when ``path`` is a folder.

    ``root`` (files only) is the folder video and pseudo-label paths are relative to; by default the
    annotation file's own folder. In CSV a label of digits is a class index (cells are text); in JSON it
    is one when it is a JSON integer. Raises ValueError naming the file and row for any malformed row.
    """
    path = str(path)
    if os.path.isdir(path):
        return read_class_folders(path)
    keys, root = keys or AnnotationKeys(), _root(path, root)
    text_cells = path.lower().endswith(".csv")
    return _parse_rows(path, lambda row, number: parse_labelled_row(row, keys, root, path, number, text_cells))
