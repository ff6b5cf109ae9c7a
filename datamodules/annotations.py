"""Reading video-text annotations from JSONL, JSON (a list of rows) or CSV.

A row names a video (relative to a root folder), one caption or a list of captions (CSV: one string),
optional ``start``/``end`` seconds and optional pseudo-label files (``mask``, ``graph``: per-frame
instance-id masks and the trajectory graph). Key names are configurable, so public data sets' own files
can be read without conversion. Extra keys are ignored. A malformed row fails loudly with the file and
row number: a silently dropped row would shift retrieval ground truth.

Row numbers are 1-based line numbers for JSONL and CSV (the CSV header is line 1) and 1-based positions
in the list for JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VideoTextRecord:
    """One annotated clip, with paths already joined to the root."""

    video: str
    captions: tuple[str, ...]
    start_sec: float | None = None
    end_sec: float | None = None
    mask: str | None = None
    graph: str | None = None


@dataclass(frozen=True)
class AnnotationKeys:
    """Column / key names of an annotation file."""

    video: str = "video"
    caption: str = "caption"
    start: str = "start"
    end: str = "end"
    mask: str = "mask"
    graph: str = "graph"


def _fail(path: str, row: int, reason: str) -> ValueError:
    return ValueError(f"{path}, row {row}: {reason}")


def _optional_seconds(value: Any, key: str, path: str, row: int) -> float | None:
    """A number of seconds, or None for absent / empty (CSV cells are strings)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _fail(path, row, f"{key!r} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except (TypeError, ValueError) as e:
        raise _fail(path, row, f"{key!r} must be a number of seconds, got {value!r}") from e
    if not seconds >= 0:  # also rejects NaN
        raise _fail(path, row, f"{key!r} must be >= 0, got {value!r}")
    return seconds


def _optional_path(value: Any, key: str, root: str, path: str, row: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _fail(path, row, f"{key!r} must be a path string, got {type(value).__name__}")
    return os.path.join(root, value)


def _captions(value: Any, key: str, path: str, row: int) -> tuple[str, ...]:
    """One caption or a non-empty list of them; every caption a non-blank string."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _fail(path, row, f"{key!r} must be a string or a non-empty list of strings, got {value!r}")
    for c in value:
        if not isinstance(c, str) or not c.strip():
            raise _fail(path, row, f"{key!r} holds a blank or non-string caption: {c!r}")
    return tuple(c.strip() for c in value)


def parse_row(row: Any, keys: AnnotationKeys, root: str, path: str, row_number: int) -> VideoTextRecord:
    """Validate one parsed row (a dict) and turn it into a record."""
    if not isinstance(row, dict):
        raise _fail(path, row_number, f"expected an object with keys, got {type(row).__name__}")
    for key in (keys.video, keys.caption):
        if key not in row or row[key] is None:
            raise _fail(path, row_number, f"missing key {key!r} (has {sorted(row)})")
    video = row[keys.video]
    if not isinstance(video, str) or not video:
        raise _fail(path, row_number, f"{keys.video!r} must be a non-empty path string, got {video!r}")
    start = _optional_seconds(row.get(keys.start), keys.start, path, row_number)
    end = _optional_seconds(row.get(keys.end), keys.end, path, row_number)
    if start is not None and end is not None and end <= start:
        raise _fail(path, row_number, f"end {end} must be greater than start {start}")
    return VideoTextRecord(
        video=os.path.join(root, video),
        captions=_captions(row[keys.caption], keys.caption, path, row_number),
        start_sec=start,
        end_sec=end,
        mask=_optional_path(row.get(keys.mask), keys.mask, root, path, row_number),
        graph=_optional_path(row.get(keys.graph), keys.graph, root, path, row_number),
    )


def _jsonl_rows(path: str) -> list[tuple[int, Any]]:
    """(line number, parsed object) for every non-blank line; decoding errors name their line."""
    rows = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise _fail(path, number, f"not valid UTF-8: {e}") from e
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as e:
                raise _fail(path, number, f"not valid JSON: {e}") from e
    return rows


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
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON at line {e.lineno}: {e.msg}") from e
    if not isinstance(data, list):
        # A malformed file, like every other one here: ValueError, not TypeError.
        raise ValueError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")  # noqa: TRY004
    return list(enumerate(data, start=1))


def _csv_rows(path: str) -> list[tuple[int, Any]]:
    """(line number, row dict) for every data row of a CSV with a header line."""
    text = _read_utf8(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    header_width = None
    for row in reader:
        header_width = header_width or len(reader.fieldnames or [])
        if None in row or any(v is None for v in row.values()):
            raise _fail(path, reader.line_num, f"expected {header_width} columns as in the header")
        rows.append((reader.line_num, row))
    return rows


READERS = {".jsonl": _jsonl_rows, ".json": _json_rows, ".csv": _csv_rows}


def read_video_text_annotations(
    path: str, root: str | None = None, keys: AnnotationKeys | None = None
) -> list[VideoTextRecord]:
    """Read every row of a JSONL / JSON / CSV annotation file (format from the extension).

    ``root`` is the folder video and pseudo-label paths are relative to; by default the annotation
    file's own folder. Raises ValueError naming the file and row for any malformed row.
    """
    path = str(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in READERS:
        raise ValueError(f"{path}: unknown annotation format {ext!r}; use one of {sorted(READERS)}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    keys = keys or AnnotationKeys()
    root = os.path.dirname(os.path.abspath(path)) if root is None else str(root)
    records = [parse_row(row, keys, root, path, number) for number, row in READERS[ext](path)]
    if not records:
        raise ValueError(f"{path}: no rows")
    return records
