"""Malformed annotation rows and files: each fails with a ValueError naming the file and the 1-based row.

The cases here are the ones the readers once let through (or let escape as another exception type); the
basic cases (missing keys, wrong types, bad JSON lines, non-UTF-8 bytes in JSONL / CSV) are in
``test_data_annotations.py``; random rows are in ``test_data_annotation_fuzz.py``.
"""

from __future__ import annotations

import json

import pytest

from datamodules.annotations import (
    read_labelled_annotations,
    read_qa_annotations,
    read_video_text_annotations,
)

GOOD = '{"video": "ok.mp4", "caption": "fine"}\n'


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"video": "a.mp4", "caption": "x", "start": Infinity}', "'start' must be a finite number"),
        ('{"video": "a.mp4", "caption": "x", "end": 1e999}', "'end' must be a finite number"),
        ('{"video": "a.mp4", "caption": "x", "start": NaN}', "'start' must be >= 0"),
        ('{"video": "a.mp4", "caption": "x", "end": 1' + "0" * 400 + "}", "'end' must be a number"),  # OverflowError
        ('{"video": "a.mp4", "caption": "x", "end": 1' + "0" * 5000 + "}", "not valid JSON.*digits"),
        ('{"video": "a.mp4", "caption": "x", "caption": "y"}', "not valid JSON.*'caption' appears twice"),
        ('{"video": "a.mp4", "caption": "\\ud800"}', "'caption' holds a lone surrogate"),
        ('{"video": "a.mp4", "caption": "a\\u0000b"}', "'caption' holds a NUL"),
        ('{"video": "a\\u0000.mp4", "caption": "x"}', "'video' holds a NUL"),
        ('{"video": "   ", "caption": "x"}', "'video' is a blank path"),
        ('{"video": "a.mp4", "caption": "x", "mask": " "}', "'mask' is a blank path"),
        ('{"video": "a.mp4", "caption": "x", "start": true}', "'start' must be a number"),
        ('{"video": ["a.mp4"], "caption": "x"}', "'video' must be a non-empty path string"),
        ('"just a string"', "expected an object"),
        ("null", "expected an object"),
    ],
)
def test_jsonl_rows_that_were_accepted_or_escaped(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(GOOD + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"bad.jsonl, row 3: .*{message}"):
        read_video_text_annotations(str(path))


@pytest.mark.parametrize(
    "text, row, message",
    [
        ('video,caption\na.mp4,x\nb.mp4,"open quote\nc.mp4,y\n', 3, "not valid CSV: unexpected end of data"),
        ('video,caption\na.mp4,"x" trailing\n', 2, "not valid CSV"),
        ("video,caption\na.mp4,x\nb.mp4," + "y" * 200_000 + "\n", 3, "not valid CSV: field larger"),
        ("video,video,caption\na.mp4,b.mp4,x\n", 1, "column 'video' appears twice"),
        ("video,caption,start\na.mp4,x,inf\n", 2, "'start' must be a finite number"),
        ("video,caption\na.mp4,x\x00y\n", 2, "'caption' holds a NUL"),
        ("video,caption\n ,x\n", 2, "'video' is a blank path"),
    ],
)
def test_csv_files_that_were_accepted_or_escaped(tmp_path, text, row, message):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8", newline="")
    with pytest.raises(ValueError, match=f"bad.csv, row {row}: .*{message}"):
        read_video_text_annotations(str(path))


def test_a_csv_row_spanning_lines_is_numbered_by_its_first(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text('video,caption,start\n\na.mp4,x,\nb.mp4,"two\nlines",soon\nc.mp4,y,1\n', encoding="utf-8")
    with pytest.raises(ValueError, match="multi.csv, row 4: 'start' must be a number"):
        read_video_text_annotations(str(path))
    path.write_text('video,caption\na.mp4,"two\nlines"\n\nb.mp4,x\n', encoding="utf-8")
    first, second = read_video_text_annotations(str(path))
    assert first.captions == ("two\nlines",) and first.origin.endswith("row 2") and second.origin.endswith("row 5")


def test_labelled_and_qa_rows_name_file_and_row(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("video,label\na.mp4,cat\nb.mp4," + "9" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="labels.csv, row 3: 'label' is not a usable class index: 5000 digits"):
        read_labelled_annotations(str(labels))
    surrogate = tmp_path / "labels.jsonl"
    surrogate.write_text('{"video": "a.mp4", "label": "\\udfff"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="labels.jsonl, row 1: 'label' holds a lone surrogate"):
        read_labelled_annotations(str(surrogate))

    qa = tmp_path / "qa.jsonl"
    rows = [
        {"video": "a.mp4", "question": "q?", "answer": "b", "options": ["a", "b"]},
        {"video": "a.mp4", "question": "q?", "answer": "a", "options": ["a", "b\u0000"]},
    ]
    qa.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(ValueError, match="qa.jsonl, row 2: 'options' holds a NUL"):
        read_qa_annotations(str(qa))
    qa.write_text('{"video": "a.mp4", "question": "q\\ud83d?", "answer": "a"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="qa.jsonl, row 1: 'question' holds a lone surrogate"):
        read_qa_annotations(str(qa))


def test_json_list_file_errors_name_the_file(tmp_path):
    dup = tmp_path / "dup.json"
    dup.write_text('[{"video": "a.mp4", "caption": "x", "video": "b.mp4"}]', encoding="utf-8")
    with pytest.raises(ValueError, match="dup.json: not valid JSON: key 'video' appears twice"):
        read_video_text_annotations(str(dup))
    bad_bytes = tmp_path / "bytes.json"
    bad_bytes.write_bytes(b'[{"video": "a.mp4",\n "caption": "caf\xe9"}]')
    with pytest.raises(ValueError, match="bytes.json, row 2: not valid UTF-8"):  # the line of the bad byte
        read_video_text_annotations(str(bad_bytes))


def test_records_remember_their_row(tmp_path):
    path = tmp_path / "ann.jsonl"
    path.write_text(GOOD + "\n" + GOOD, encoding="utf-8")
    first, second = read_video_text_annotations(str(path))
    assert first.origin == f"{path}, row 1" and second.origin == f"{path}, row 3"
    assert first == second  # origin is bookkeeping, not part of a record's value
    qa = tmp_path / "qa.csv"
    qa.write_text("video,question,answer,options\na.mp4,q?,x,x|y\n", encoding="utf-8")
    (record,) = read_qa_annotations(str(qa))
    assert record.origin == f"{qa}, row 2" and record.options == ("x", "y") and record.answer_index == 0
