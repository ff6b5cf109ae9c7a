"""Annotation readers (JSONL / JSON / CSV) and pseudo-label files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from datamodules.annotations import (
    AnnotationKeys,
    VideoTextRecord,
    read_video_text_annotations,
)
from datamodules.pseudo_label_files import (
    PseudoLabelError,
    load_pseudo_labels,
    pseudo_label_paths,
    write_graph,
    write_masks,
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_jsonl_single_and_multi_caption_segments_and_pseudo_labels(tmp_path):
    path = tmp_path / "ann.jsonl"
    path.write_text(
        json.dumps({"video": "v/a.mp4", "caption": "a dog runs"})
        + "\n\n"  # blank lines are allowed
        + json.dumps(
            {"video": "v/b.mp4", "caption": ["one", " two "], "start": 1.5, "end": 4, "mask": "m.npz", "graph": "g.npz",
             "extra": {"ignored": True}}
        )
        + "\n",
        encoding="utf-8",
    )
    a, b = read_video_text_annotations(str(path))
    assert a == VideoTextRecord(video=os.path.join(str(tmp_path), "v/a.mp4"), captions=("a dog runs",))
    assert b.captions == ("one", "two") and (b.start_sec, b.end_sec) == (1.5, 4.0)
    assert b.mask == os.path.join(str(tmp_path), "m.npz") and b.graph == os.path.join(str(tmp_path), "g.npz")
    (c,) = read_video_text_annotations(write_jsonl(tmp_path / "x.jsonl", [{"video": "a.mp4", "caption": "c"}]), root="/data")
    assert c.video == "/data/a.mp4"


def test_json_list(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps([{"video": "a.mp4", "caption": ["x", "y", "z"]}, {"video": "/abs/b.mp4", "caption": "w"}]))
    a, b = read_video_text_annotations(str(path), root="/r")
    assert a.captions == ("x", "y", "z") and a.video == "/r/a.mp4"
    assert b.video == "/abs/b.mp4"  # absolute paths are kept


def test_csv_with_optional_columns(tmp_path):
    path = tmp_path / "ann.csv"
    path.write_text('video,caption,start,end\na.mp4,"a man, cooking",,\nb.mp4,two,0.5,2\n', encoding="utf-8")
    a, b = read_video_text_annotations(str(path))
    assert a.captions == ("a man, cooking",) and a.start_sec is None and a.end_sec is None
    assert (b.start_sec, b.end_sec) == (0.5, 2.0)


def test_custom_keys(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"video_id": "v1.mp4", "sentences": ["s1", "s2"], "t0": 2, "t1": 3}])
    keys = AnnotationKeys(video="video_id", caption="sentences", start="t0", end="t1")
    (r,) = read_video_text_annotations(path, root="", keys=keys)
    assert (r.video, r.captions, r.start_sec, r.end_sec) == ("v1.mp4", ("s1", "s2"), 2.0, 3.0)


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ({"caption": "x"}, "missing key 'video'"),
        ({"video": "a.mp4"}, "missing key 'caption'"),
        ({"video": "a.mp4", "caption": 3}, "'caption' must be"),
        ({"video": "a.mp4", "caption": []}, "'caption' must be"),
        ({"video": "a.mp4", "caption": ["ok", 5]}, "non-string caption"),
        ({"video": "a.mp4", "caption": "  "}, "blank"),
        ({"video": 7, "caption": "x"}, "'video' must be"),
        ({"video": "a.mp4", "caption": "x", "start": "soon"}, "'start' must be a number"),
        ({"video": "a.mp4", "caption": "x", "start": 3, "end": 2}, "greater than start"),
        ({"video": "a.mp4", "caption": "x", "mask": 1}, "'mask' must be a path"),
        (["a.mp4", "x"], "expected an object"),
    ],
)
def test_malformed_jsonl_rows_name_file_and_row(tmp_path, bad_row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"video": "ok.mp4", "caption": "fine"}, bad_row])
    with pytest.raises(ValueError, match=f"bad.jsonl, row 2: .*{message}"):
        read_video_text_annotations(path)


def test_malformed_json_csv_and_encoding(tmp_path):
    bad_json_line = tmp_path / "a.jsonl"
    bad_json_line.write_text('{"video": "a.mp4", "caption": "x"}\n{"video": \n', encoding="utf-8")
    with pytest.raises(ValueError, match="a.jsonl, row 2: not valid JSON"):
        read_video_text_annotations(str(bad_json_line))

    bad_bytes = tmp_path / "b.jsonl"
    bad_bytes.write_bytes(b'{"video": "a.mp4", "caption": "x"}\n\n{"video": "b.mp4", "caption": "caf\xe9"}\n')
    with pytest.raises(ValueError, match="b.jsonl, row 3: not valid UTF-8"):
        read_video_text_annotations(str(bad_bytes))

    json_item = tmp_path / "c.json"
    json_item.write_text(json.dumps([{"video": "a.mp4", "caption": "x"}, {"video": "b.mp4"}, {"video": "c"}]))
    with pytest.raises(ValueError, match="c.json, row 2: missing key 'caption'"):
        read_video_text_annotations(str(json_item))

    not_list = tmp_path / "d.json"
    not_list.write_text(json.dumps({"video": "a.mp4", "caption": "x"}))
    with pytest.raises(ValueError, match="d.json: expected a JSON list"):
        read_video_text_annotations(str(not_list))

    csv_columns = tmp_path / "e.csv"
    csv_columns.write_text("video,caption\na.mp4,x\nb.mp4,y,extra\n")
    with pytest.raises(ValueError, match="e.csv, row 3: expected 2 columns"):
        read_video_text_annotations(str(csv_columns))

    csv_bytes = tmp_path / "f.csv"
    csv_bytes.write_bytes(b"video,caption\na.mp4,x\nb.mp4,\xff\xfe\n")
    with pytest.raises(ValueError, match="f.csv, row 3: not valid UTF-8"):
        read_video_text_annotations(str(csv_bytes))

    csv_missing_column = tmp_path / "g.csv"
    csv_missing_column.write_text("path,caption\na.mp4,x\n")
    with pytest.raises(ValueError, match="g.csv, row 2: missing key 'video'"):
        read_video_text_annotations(str(csv_missing_column))

    with pytest.raises(ValueError, match="unknown annotation format"):
        read_video_text_annotations(str(tmp_path / "h.txt"))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_video_text_annotations(str(tmp_path / "nope.jsonl"))
    empty = tmp_path / "i.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="no rows"):
        read_video_text_annotations(str(empty))


def test_pseudo_label_files_round_trip_in_trajvit_format(tmp_path):
    masks = np.zeros((4, 6, 5), np.uint8)
    masks[:, :2] = 1
    masks[2:, 4:] = 2
    graph = np.array([[1, 1, 1, 1], [0, 0, 2, 2]])
    mask_path, graph_path = pseudo_label_paths(str(tmp_path / "clip.mp4"))
    assert mask_path.endswith("clip_mask.npz") and graph_path.endswith("clip_graph.npz")
    write_masks(mask_path, masks)
    write_graph(graph_path, graph)
    with np.load(mask_path) as f:  # the names the TrajViT pipeline writes and reads
        assert f.files == ["arr_0"] and f["arr_0"].dtype == np.uint8
    with np.load(graph_path) as f:
        assert f.files == ["tensor"] and f["tensor"].dtype == np.int64
    m, g, stuff = load_pseudo_labels(mask_path, graph_path)
    assert np.array_equal(m, masks) and np.array_equal(g, graph)
    assert stuff.tolist() == [False, False]  # the pipeline's files say nothing of stuff: all objects
    write_graph(graph_path, graph, stuff=np.array([True, False]))
    with np.load(graph_path) as f:
        assert f.files == ["tensor", "stuff"]
    assert load_pseudo_labels(mask_path, graph_path)[2].tolist() == [True, False]


def test_pseudo_label_errors_name_the_file(tmp_path):
    masks = np.zeros((4, 6, 5), np.uint8)
    write_masks(str(tmp_path / "m.npz"), masks)
    write_graph(str(tmp_path / "g3.npz"), np.zeros((2, 3)))
    with pytest.raises(PseudoLabelError, match="g3.npz.*does not match 4 mask frames"):
        load_pseudo_labels(str(tmp_path / "m.npz"), str(tmp_path / "g3.npz"))
    np.savez(tmp_path / "wrong.npz", graph=np.zeros((2, 4)))
    with pytest.raises(PseudoLabelError, match="wrong.npz.*no array 'tensor'"):
        load_pseudo_labels(str(tmp_path / "m.npz"), str(tmp_path / "wrong.npz"))
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(PseudoLabelError, match="junk.npz.*cannot read"):
        load_pseudo_labels(str(tmp_path / "junk.npz"), str(tmp_path / "g3.npz"))
    with pytest.raises(PseudoLabelError, match="absent.npz.*not found"):
        load_pseudo_labels(str(tmp_path / "absent.npz"), str(tmp_path / "g3.npz"))
    np.savez(tmp_path / "g4.npz", tensor=np.zeros((2, 4), np.int64), stuff=np.zeros(3, bool))
    with pytest.raises(PseudoLabelError, match=r"g4.npz.*stuff shape \(3,\) does not match the graph's 2 rows"):
        load_pseudo_labels(str(tmp_path / "m.npz"), str(tmp_path / "g4.npz"))
    with pytest.raises(ValueError, match="stuff must be"):
        write_graph(str(tmp_path / "g5.npz"), np.zeros((2, 4)), stuff=np.zeros(3, bool))
