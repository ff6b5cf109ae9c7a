"""The row-parsing toolkit of annotation files: reading JSONL / JSON / CSV files as numbered rows, and checking
the values of a row, each failure a ValueError naming the file and the row.

``datamodules.annotations`` builds its records from these, and so do the readers of public data sets' own files
(``datamodules.public_sets``) and of video segmentation benchmarks (``datamodules.video_segmentation``), so that every
file the data layer reads is held to the same rules:

- row numbers are 1-based line numbers for JSONL and CSV (the CSV header is line 1; a CSV row spanning lines is
  numbered by its first) and 1-based positions in a JSON list;
- malformed means, besides missing keys and wrong types: bytes that are not UTF-8, a JSON object with a key twice,
  a CSV header with a column twice or a quoted cell left open, non-finite or negative seconds, a NUL character in
  a path or text, and text that cannot be written as UTF-8 (a lone surrogate from a ``\ud800`` escape), which would
  only fail later in a tokenizer.

The value checkers take the value, its key (for the message), the file and the row number, and return the value as
a record holds it (stripped, joined to a root, a tuple).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# CSV cells are text, so an integer class index arrives as digits.
_INTEGER = re.compile(r"[+-]?[0-9]+")


def row_error(path: str, row: int, reason: str) -> ValueError:
    """The error of a malformed row, "<file>, row <N>: <reason>" (raise it)."""
    return ValueError(f"{path}, row {row}: {reason}")


def unusable_text(value: str) -> str | None:
    """Why a string from a file cannot be used as text or a path (None when it can): a NUL character
    (often a UTF-16 file read as UTF-8), or a lone surrogate, which no UTF-8 consumer accepts."""
    if "\x00" in value:
        return "holds a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate (not encodable as UTF-8)"
    return None


def optional_seconds(value: Any, key: str, path: str, row: int) -> float | None:
    """A number of seconds, or None for absent / empty (CSV cells are strings)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise row_error(path, row, f"{key!r} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError) as e:  # OverflowError: an integer beyond float range
        raise row_error(path, row, f"{key!r} must be a number of seconds, got {value!r}") from e
    if not seconds >= 0:  # also rejects NaN
        raise row_error(path, row, f"{key!r} must be >= 0, got {value!r}")
    if math.isinf(seconds):
        raise row_error(path, row, f"{key!r} must be a finite number of seconds, got {value!r}")
    return seconds


def optional_path(value: Any, key: str, root: str, path: str, row: int) -> str | None:
    """A path relative to ``root``, joined to it, or None for absent / empty; a non-string or unusable path fails."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise row_error(path, row, f"{key!r} must be a path string, got {type(value).__name__}")
    check_path(value, key, path, row)
    return os.path.join(root, value)


def check_path(value: str, key: str, path: str, row: int) -> None:
    """Fail unless ``value`` can be a path: not blank, no NUL, encodable as UTF-8."""
    if not value.strip():
        raise row_error(path, row, f"{key!r} is a blank path")
    problem = unusable_text(value)
    if problem:
        raise row_error(path, row, f"{key!r} {problem}: {value!r}")


def parse_captions(value: Any, key: str, path: str, row: int) -> tuple[str, ...]:
    """One caption or a non-empty list of them; every caption a non-blank string."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise row_error(path, row, f"{key!r} must be a string or a non-empty list of strings, got {value!r}")
    for c in value:
        if not isinstance(c, str) or not c.strip():
            raise row_error(path, row, f"{key!r} holds a blank or non-string caption: {c!r}")
        problem = unusable_text(c)
        if problem:
            raise row_error(path, row, f"{key!r} {problem}: {c!r}")
    return tuple(c.strip() for c in value)


def parse_label(value: Any, key: str, path: str, row: int, text_cells: bool) -> str | int:
    """A non-blank class name (stripped) or a class index >= 0; ``text_cells``: digits are an index."""
    if text_cells and isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        try:
            value = int(value)
        except ValueError as e:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise row_error(path, row, f"{key!r} is not a usable class index: {len(value.strip())} digits") from e
    # bool is an int subclass, but true/false in a label column is a mistake, not class 1/0.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise row_error(path, row, f"{key!r} must be a class name or an integer class index, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise row_error(path, row, f"{key!r} must be a class index >= 0, got {value}")
        return value
    if not value.strip():
        raise row_error(path, row, f"{key!r} is a blank class name")
    problem = unusable_text(value)
    if problem:
        raise row_error(path, row, f"{key!r} {problem}: {value!r}")
    return value.strip()


def parse_text(value: Any, key: str, path: str, row: int) -> str:
    """A non-blank string, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise row_error(path, row, f"{key!r} must be a non-blank string, got {value!r}")
    problem = unusable_text(value)
    if problem:
        raise row_error(path, row, f"{key!r} {problem}: {value!r}")
    return value.strip()


def parse_options(value: Any, key: str, path: str, row: int, text_cells: bool) -> tuple[str, ...]:
    """Multiple-choice options: absent, null, "" or [] for none, else at least 2 distinct non-blank
    strings (stripped); ``text_cells`` (CSV): one string of options separated by "|"."""
    if value is None or value == "" or value == []:
        return ()
    if text_cells and isinstance(value, str):
        value = value.split("|")
    if not isinstance(value, list):
        raise row_error(path, row, f"{key!r} must be a list of strings, got {value!r}")
    for o in value:
        if not isinstance(o, str) or not o.strip():
            raise row_error(path, row, f"{key!r} holds a blank or non-string option: {o!r}")
        problem = unusable_text(o)
        if problem:
            raise row_error(path, row, f"{key!r} {problem}: {o!r}")
    options = tuple(o.strip() for o in value)
    repeated = next((o for i, o in enumerate(options) if o in options[:i]), None)
    if repeated is not None:
        # The answer's position would be ambiguous.
        raise row_error(path, row, f"{key!r} repeats {repeated!r}")
    if len(options) < 2:
        raise row_error(path, row, f"{key!r} must hold at least 2 distinct options, got {list(options)}")
    return options


def require_keys(row: Any, required: tuple[str, ...], path: str, row_number: int) -> None:
    """The row is an object and has every required key (null counts as missing)."""
    if not isinstance(row, dict):
        raise row_error(path, row_number, f"expected an object with keys, got {type(row).__name__}")
    for key in required:
        if key not in row or row[key] is None:
            raise row_error(path, row_number, f"missing key {key!r} (has {sorted(row)})")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that names each key once (``json`` would otherwise keep the last silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def loads_json(text: str) -> Any:
    """``json.loads`` refusing repeated keys; ValueError (JSONDecodeError among them) for anything wrong,
    including integers with more digits than Python converts."""
    return json.loads(text, object_pairs_hook=_object)


def jsonl_rows(path: str) -> list[tuple[int, Any]]:
    """(line number, parsed object) for every non-blank line; decoding errors name their line."""
    return list(iter_jsonl(path))


def iter_jsonl(path: str) -> Iterator[tuple[int, Any]]:
    """``jsonl_rows`` one line at a time, so a caller checking rows as they come reports the first bad
    row of the file, whether its JSON or its content is wrong."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise row_error(path, number, f"not valid UTF-8: {e}") from e
            if not line.strip():
                continue
            try:
                row = loads_json(line)
            except ValueError as e:  # JSONDecodeError, a repeated key, an integer too long to convert
                raise row_error(path, number, f"not valid JSON: {e}") from e
            yield number, row


def read_utf8(path: str) -> str:
    """The whole file as text; a decoding error names the line it is on."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise row_error(path, raw[: e.start].count(b"\n") + 1, f"not valid UTF-8: {e}") from e


def read_json(path: str) -> Any:
    """A whole JSON file of any shape, refusing repeated keys; a missing file is ``FileNotFoundError``, a malformed
    one a ValueError naming the file (and the line, when JSON says one)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    text = read_utf8(path)
    try:
        return loads_json(text)
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e


def json_rows(path: str) -> list[tuple[int, Any]]:
    """(position, row) for a file holding one JSON list of rows."""
    text = read_utf8(path)
    try:
        data = loads_json(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON at line {e.lineno}: {e.msg}") from e
    except ValueError as e:  # a repeated key, an integer too long to convert: no position to give
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, list):
        # A malformed file, like every other one here: ValueError, not TypeError.
        raise ValueError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
    return list(enumerate(data, start=1))


def iter_csv(path: str) -> Iterator[tuple[int, Any]]:
    """(line number, row dict) for every data row of a CSV with a header line, one at a time; a row's
    number is the line it starts on (a quoted cell may span lines). Blank lines are skipped. The file is
    decoded whole first, so a non-UTF-8 byte anywhere fails before any row.

    Strict quoting: a quote left open would otherwise swallow every following line into one cell,
    silently merging rows. Errors of the csv module name the line the failing row starts on.
    """
    text = read_utf8(path)
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
                    raise row_error(path, start, f"column {repeated!r} appears twice in the header")
                continue
            if len(record) != len(header):
                raise row_error(path, start, f"expected {len(header)} columns as in the header, got {len(record)}")
            yield start, dict(zip(header, record))
    except csv.Error as e:  # an open quote at the end, text after a closing quote, a huge field
        raise row_error(path, ended + 1, f"not valid CSV: {e}") from e


#: The row reader of each annotation format, by file extension.
READERS = {".jsonl": iter_jsonl, ".json": json_rows, ".csv": iter_csv}


def iter_rows(path: str) -> Iterable[tuple[int, Any]]:
    """(row number, parsed row) of a JSONL / JSON / CSV file (format from the extension), as they are read
    (JSONL and CSV; a JSON list is parsed whole); an unknown format or missing file fails at once."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in READERS:
        raise ValueError(f"{path}: unknown annotation format {ext!r}; use one of {sorted(READERS)}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    return READERS[ext](path)


def parse_rows(path: str, parse: Callable[[Any, int], Any]) -> list[Any]:
    """``parse(row, number)`` of every row as it is read, so the error raised is the file's first bad row
    (for CSV, a non-UTF-8 byte anywhere comes first); at least one row."""
    records = [parse(row, number) for number, row in iter_rows(path)]
    if not records:
        raise ValueError(f"{path}: no rows")
    return records
