"""Random annotation rows through the video-text, classification and QA readers (hypothesis).

Rows mix plausible values (so that many files are valid) with anything JSON can hold, CSV cells with any
text, extra keys, and non-object rows. The property: reading a file either returns one record per row whose
fields have the right types and the row's values, or raises ValueError naming the file and the row, which
is the first row that fails on its own. Nothing is decoded: only the readers run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from datamodules.annotations import (
    AnnotationKeys,
    LabelledVideoRecord,
    QARecord,
    VideoTextRecord,
    read_labelled_annotations,
    read_qa_annotations,
    read_video_text_annotations,
)

ROOT = "/data/root"
KINDS = {
    "video_text": (read_video_text_annotations, ("video", "caption")),
    "labelled": (read_labelled_annotations, ("video", "label")),
    "qa": (read_qa_annotations, ("video", "question", "answer", "options")),
}
CLIP_KEYS = ("start", "end", "mask", "graph")
WORDS = ["a", "b", "cat", " dog ", "x y", "é", ""]  # the last one blank

# Anything JSON holds, with a bias to small values.
anything = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**20) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)
# Per key: values a valid row may hold, and near misses.
VALID = {
    "video": st.sampled_from(["a.mp4", "dir/b.mkv", "/abs/c.mp4", " d.mp4"]),
    "caption": st.sampled_from(WORDS[:-1]) | st.lists(st.sampled_from(WORDS[:-1]), min_size=1, max_size=3),
    "label": st.sampled_from(WORDS[:-1]) | st.integers(0, 5),
    "question": st.sampled_from(WORDS[:-1]),
    "answer": st.sampled_from(["a", "b"]),
    "options": st.sampled_from([[], ["a", "b"], ["b", " a ", "cat"], None]),
    "start": st.sampled_from([0, 1.5, 3, "2", "", None]),
    "end": st.sampled_from([4.0, 10, "5", "", None]),
    "mask": st.sampled_from(["m.npz", "", None]),
    "graph": st.sampled_from(["g.npz", "", None]),
}
NEAR = {
    "video": st.sampled_from([" ", "", "x\x00.mp4", "\ud800.mp4", 3]),
    "caption": st.sampled_from(["", "  ", [], ["a", ""], "a\x00", "\udc80", 7]),
    "label": st.sampled_from(["", " ", -1, True, 1.0, "3", "\x00"]),
    "question": st.sampled_from(["", " ", None, "\ud800?"]),
    "answer": st.sampled_from(["", "c", "cat", None]),
    "options": st.sampled_from([["a"], ["a", "a"], ["a", ""], "a|b", [1, 2], ["a", "b\x00"]]),
    "start": st.sampled_from([-1, "soon", True, 10**400, "inf"]) | st.floats(allow_nan=True, allow_infinity=True),
    "end": st.sampled_from([0, 1, "nan", [], 1e308 * 10]),
    "mask": st.sampled_from([" ", 3, ["m.npz"]]),
    "graph": st.sampled_from([False, "g\x00.npz"]),
}
cell_text = st.sampled_from(["", "a.mp4", "cat", "1", "-1", "007", "2.5", "inf", "nan", "x|y", "a|a", "q?", "|", " "]) | \
    st.text(max_size=8)
VALID_CELLS = {
    "video": st.sampled_from(["a.mp4", "b c.mp4"]),
    "caption": st.sampled_from(["a dog", " cat ", "a, b", 'say "hi"', "two\nlines"]),
    "label": st.sampled_from(["cat", "0", "12", " dog "]),
    "question": st.sampled_from(["what?", "which way?"]),
    "answer": st.sampled_from(["a", "b"]),
    "options": st.sampled_from(["", "a|b", "b| a |c"]),
    "start": st.sampled_from(["", "0", "1.5"]),
    "end": st.sampled_from(["", "4", "9.25"]),
    "mask": st.sampled_from(["", "m.npz"]),
    "graph": st.sampled_from(["", "g.npz"]),
    "extra": cell_text,
}


def mostly(valid, near, other):
    """A valid value 4 times in 6, a near miss once, anything else once (valid files must not be rare)."""
    return st.integers(0, 5).flatmap(lambda n: valid if n < 4 else near if n == 4 else other)


def json_row(keys: tuple[str, ...]):
    """A dict with each of the kind's keys (and the clip keys) valid, nearly valid, anything or absent, plus
    random extra keys; sometimes not a dict at all."""
    def value(key: str, required: bool):
        other = anything if required else st.one_of(st.just(...), anything)
        return mostly(VALID[key], NEAR[key], other) if required else \
            st.integers(0, 2).flatmap(lambda n: st.just(...) if n == 0 else mostly(VALID[key], NEAR[key], other))

    entries = {key: value(key, key in keys and key != "options") for key in (*keys, *CLIP_KEYS)}
    obj = st.fixed_dictionaries(entries).map(lambda d: {k: v for k, v in d.items() if v is not ...})
    extra = st.dictionaries(st.sampled_from(["extra", "id", "Video", "caption2"]), anything, max_size=2)
    row = st.tuples(obj, extra).map(lambda t: {**t[1], **t[0]})
    return st.integers(0, 9).flatmap(lambda n: anything if n == 0 else row)


def csv_table(keys: tuple[str, ...]):
    """A header of the kind's keys and some others (rarely missing one), and rows of cells, mostly of the
    header's width."""
    required = [k for k in keys if k != "options"]
    optional = st.lists(st.sampled_from([k for k in (*keys, *CLIP_KEYS, "extra") if k not in required]), unique=True,
                        max_size=4)
    columns = st.tuples(optional, st.integers(0, 9)).map(
        lambda t: (required[: -1] if t[1] == 0 else required) + t[0])

    def cells(cols):
        row = st.tuples(*[mostly(VALID_CELLS[c], cell_text, cell_text) for c in cols]).map(list)
        ragged = st.lists(cell_text, max_size=len(cols) + 1)
        return st.integers(0, 9).flatmap(lambda n: ragged if n == 0 else row)

    return columns.filter(bool).flatmap(
        lambda cols: st.tuples(st.just(cols), st.lists(cells(cols), min_size=1, max_size=3)))


def write(folder: str, fmt: str, rows) -> tuple[str, list[int]]:
    """The file, and the row number each row gets in it."""
    path = os.path.join(folder, f"ann.{fmt}")
    if fmt == "csv":
        header, records = rows
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)  # "\r\n" lines: a cell holding "\r" or "\n" is quoted
        writer.writerow(header)
        numbers = []
        for record in records:
            # The line the row starts on, lines ending at "\n", "\r\n" or a lone "\r", as the reader counts.
            numbers.append(len(io.StringIO(buffer.getvalue(), newline="").readlines()) + 1)
            writer.writerow(record)
        text = buffer.getvalue()
    elif fmt == "jsonl":
        text = "".join(json.dumps(r) + "\n" for r in rows)
        numbers = list(range(1, len(rows) + 1))
    else:
        text = json.dumps(rows)
        numbers = list(range(1, len(rows) + 1))
    with open(path, "w", encoding="utf-8", errors="surrogatepass", newline="") as f:
        f.write(text)
    return path, numbers


def check_text(value: str) -> None:
    assert isinstance(value, str) and value == value.strip() and value and "\x00" not in value
    value.encode("utf-8")


def check_record(kind: str, record, row: dict, path: str) -> None:
    """The record's fields have the right types and are the row's values."""
    keys = AnnotationKeys()
    cls = {"video_text": VideoTextRecord, "labelled": LabelledVideoRecord, "qa": QARecord}[kind]
    assert type(record) is cls
    assert record.video == os.path.join(ROOT, row[keys.video]) and row[keys.video].strip()
    for field, key in (("start_sec", "start"), ("end_sec", "end")):
        value = getattr(record, field)
        if row.get(key) in (None, ""):
            assert value is None
        else:
            assert type(value) is float and math.isfinite(value) and value >= 0 and value == float(row[key])
    if record.start_sec is not None and record.end_sec is not None:
        assert record.end_sec > record.start_sec
    for field in ("mask", "graph"):
        value = getattr(record, field)
        assert value is None if row.get(field) in (None, "") else value == os.path.join(ROOT, row[field])
    assert record.origin is not None and record.origin.startswith(f"{path}, row ")
    if kind == "video_text":
        captions = row["caption"] if isinstance(row["caption"], list) else [row["caption"]]
        assert type(record.captions) is tuple and record.captions == tuple(c.strip() for c in captions)
        for c in record.captions:
            check_text(c)
    elif kind == "labelled":
        label = record.label
        if type(label) is int:
            assert label >= 0 and (row["label"] == label if not isinstance(row["label"], str) else
                                   int(row["label"]) == label and path.endswith(".csv"))
        else:
            check_text(label)
            assert label == row["label"].strip()
    else:
        check_text(record.question)
        check_text(record.answer)
        assert type(record.options) is tuple
        if record.options:
            assert len(record.options) >= 2 and len(set(record.options)) == len(record.options)
            for o in record.options:
                check_text(o)
            assert record.options[record.answer_index] == record.answer
        else:
            assert record.answer_index == -1


def as_dict(fmt: str, rows, i: int):
    if fmt == "csv":
        header, records = rows
        return dict(zip(header, records[i]))
    return rows[i]


def single(fmt: str, rows, i: int):
    if fmt == "csv":
        return rows[0], [rows[1][i]]
    return [rows[i]]


def check_file(kind: str, fmt: str, rows) -> None:
    reader, _ = KINDS[kind]
    if fmt == "csv":
        rows = (rows[0], [r for r in rows[1] if r])  # an empty record is a blank line, which readers skip
        if not rows[1]:
            return
    count = len(rows[1]) if fmt == "csv" else len(rows)
    with tempfile.TemporaryDirectory() as folder:
        path, numbers = write(folder, fmt, rows)
        try:
            records = reader(path, root=ROOT)
        except ValueError as e:
            message = str(e)
            assert message.startswith(f"{path}, row "), message
            row_number = int(message[len(f"{path}, row "):].split(":")[0])
            event(f"{fmt}: ValueError")
        else:
            event(f"{fmt}: read")
            assert len(records) == count
            for i, record in enumerate(records):
                check_record(kind, record, as_dict(fmt, rows, i), path)
            return
    if fmt == "csv" and row_number == 1:  # the header itself
        assert "header" in message or "not valid" in message, message
        return
    if "not valid UTF-8" in message:  # CSV files are decoded whole: the line of the bad byte, before any row
        assert fmt == "csv" and 1 < row_number <= path_lines(rows), message
        return
    assert row_number in numbers, message
    failing = numbers.index(row_number)
    # The row named is the first that fails on its own: the rows before it read, it alone does not.
    for i in range(failing + 1):
        with tempfile.TemporaryDirectory() as folder:
            path, _ = write(folder, fmt, single(fmt, rows, i))
            try:
                reader(path, root=ROOT)
                ok = True
            except ValueError as e:
                ok = False
                assert str(e).startswith(f"{path}, row "), str(e)
            assert ok == (i < failing), (i, failing, message)


def path_lines(rows) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path, _ = write(folder, "csv", rows)
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            return len(f.readlines())


# TRAJTOK_FUZZ_EXAMPLES=5000 for a longer search than the suite's.
FUZZ = settings(max_examples=int(os.environ.get("TRAJTOK_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.data())
def test_json_lines_and_lists(data):
    kind = data.draw(st.sampled_from(sorted(KINDS)), label="kind")
    fmt = data.draw(st.sampled_from(["jsonl", "json"]), label="format")
    rows = data.draw(st.lists(json_row(KINDS[kind][1]), min_size=1, max_size=3), label="rows")
    check_file(kind, fmt, rows)


@FUZZ
@given(st.data())
def test_csv_cells(data):
    kind = data.draw(st.sampled_from(sorted(KINDS)), label="kind")
    check_file(kind, "csv", data.draw(csv_table(KINDS[kind][1]), label="table"))
