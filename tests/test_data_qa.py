"""Question-answering data: QA annotation files, the questions derived for the synthetic set, and batches
of real mp4 files written here with PyAV."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentError, ArgumentParser

from datamodules import QADataModule, QADataset, collate_qa
from datamodules.annotations import AnnotationKeys, QARecord, read_qa_annotations
from datamodules.options import ClipOptions, LoaderOptions, SyntheticOptions
from datamodules.qa import (
    MOTION_QUESTION,
    colour_options,
    synthetic_qa_path,
    synthetic_questions,
)
from datamodules.synthetic import (
    MOTIONS,
    SyntheticConfig,
    ensure_synthetic,
    write_mp4,
)
from datamodules.transforms import IMAGENET_MEAN, IMAGENET_STD
from datamodules.video import VideoDecodeError
from trajtok.files import PARTIAL

CLIP = ClipOptions(num_frames=4, image_size=16)


def small_synthetic(cache: str) -> SyntheticOptions:
    return SyntheticOptions(cache_dir=cache, train=16, val=8, test=8)


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def obj(colour, shape, motion, size="small"):
    return {"shape": shape, "colour": colour, "size": size, "motion": motion}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Folder with a.mp4 .. c.mp4: 6-frame 16x16 clips of increasing grey level."""
    root = tmp_path_factory.mktemp("videos")
    for i, name in enumerate("abc"):
        write_mp4(str(root / f"{name}.mp4"), np.full((6, 16, 16, 3), 40 + 60 * i, np.uint8), fps=8)
    return root


# ------------------------------------------------------------------------------------------------ reading


def test_jsonl_json_and_csv_rows_with_and_without_options(tmp_path):
    jsonl = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"video": "v/a.mp4", "question": " what moves? ", "answer": "a dog"},
            {"video": "v/a.mp4", "question": "colour?", "answer": " red", "options": ["blue", "red "], "start": 1,
             "end": 2.5},
            {"video": "v/b.mp4", "question": "q", "answer": "x", "options": []},  # [] is no options, as in samples
        ],
    )
    a, b, c = read_qa_annotations(jsonl)
    assert a == QARecord(video=str(tmp_path / "v/a.mp4"), question="what moves?", answer="a dog")
    assert a.options == () and a.answer_index == -1
    assert (b.video, b.options, b.answer, b.answer_index) == (a.video, ("blue", "red"), "red", 1)  # same video again
    assert (b.start_sec, b.end_sec) == (1.0, 2.5) and c.options == ()

    json_list = tmp_path / "b.json"
    json_list.write_text(json.dumps([{"video": "x.mp4", "question": "yes?", "answer": "no", "options": ["yes", "no"]}]))
    (x,) = read_qa_annotations(str(json_list), root="/data")
    assert (x.video, x.options, x.answer_index) == ("/data/x.mp4", ("yes", "no"), 1)

    csv = tmp_path / "c.csv"
    csv.write_text("video,question,answer,options,start\nx.mp4,how many?,two,one| two |three,0.5\ny.mp4,why?,because,,\n")
    x, y = read_qa_annotations(str(csv))
    assert (x.options, x.answer_index, x.start_sec) == (("one", "two", "three"), 1, 0.5)
    assert (y.question, y.answer, y.options, y.start_sec) == ("why?", "because", (), None)

    keys = AnnotationKeys(video="clip", question="q", answer="a", options="choices", start="t0", end="t1")
    rows = [{"clip": "p.mp4", "q": "which?", "a": "B", "choices": ["A", "B"], "t0": 1, "t1": 3}]
    (r,) = read_qa_annotations(write_jsonl(tmp_path / "d.jsonl", rows), "", keys)
    assert (r.video, r.question, r.answer_index, r.start_sec, r.end_sec) == ("p.mp4", "which?", 1, 1.0, 3.0)


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ({"question": "q", "answer": "a"}, "missing key 'video'"),
        ({"video": "a.mp4", "answer": "a"}, "missing key 'question'"),
        ({"video": "a.mp4", "question": "q", "answer": None}, "missing key 'answer'"),
        ({"video": "a.mp4", "question": 3, "answer": "a"}, "'question' must be a non-blank string, got 3"),
        ({"video": "a.mp4", "question": "q", "answer": " "}, "'answer' must be a non-blank string"),
        ({"video": "a.mp4", "question": "q", "answer": "c", "options": ["a", "b"]},
         r"'answer' 'c' is not one of the options \['a', 'b'\]"),
        ({"video": "a.mp4", "question": "q", "answer": "a", "options": ["a"]}, "at least 2 distinct options"),
        ({"video": "a.mp4", "question": "q", "answer": "a", "options": ["a", " a"]}, "'options' repeats 'a'"),
        ({"video": "a.mp4", "question": "q", "answer": "a", "options": "a|b"}, "'options' must be a list of strings"),
        ({"video": "a.mp4", "question": "q", "answer": "a", "options": ["a", 2]}, "non-string option: 2"),
        ({"video": "a.mp4", "question": "q", "answer": "a", "start": "soon"}, "'start' must be a number of seconds"),
        ({"video": "a.mp4", "question": "q", "answer": "a", "start": -1}, "'start' must be >= 0"),
        ({"video": "a.mp4", "question": "q", "answer": "a", "start": 2, "end": 1}, "greater than start"),
    ],
)
def test_malformed_rows_name_file_and_row(tmp_path, bad_row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"video": "ok.mp4", "question": "q", "answer": "a"}, bad_row])
    with pytest.raises(ValueError, match=f"bad.jsonl, row 2: .*{message}"):
        read_qa_annotations(path)


def test_malformed_csv_and_json_rows_name_file_and_row(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("video,question,answer,options\na.mp4,q,a,a|b\nb.mp4,q,c,a|b\n")
    with pytest.raises(ValueError, match=r"bad.csv, row 3: 'answer' 'c' is not one of the options \['a', 'b'\]"):
        read_qa_annotations(str(csv))
    csv.write_text("video,question,answer,options\na.mp4,q,a,a\n")
    with pytest.raises(ValueError, match="bad.csv, row 2: 'options' must hold at least 2 distinct options"):
        read_qa_annotations(str(csv))
    csv.write_text("video,question,answer,options\na.mp4,q,a,a||b\n")
    with pytest.raises(ValueError, match="bad.csv, row 2: 'options' holds a blank or non-string option"):
        read_qa_annotations(str(csv))
    js = tmp_path / "bad.json"
    js.write_text(json.dumps([{"video": "a.mp4", "question": "q", "answer": "a"}, {"video": "a.mp4", "question": "q"}]))
    with pytest.raises(ValueError, match="bad.json, row 2: missing key 'answer'"):
        read_qa_annotations(str(js))


# ------------------------------------------------------------------------------------ synthetic questions


def test_synthetic_questions_match_hand_derived_ones():
    # Two objects move left (no single "left" mover), one moves up: the colour question asks about "up".
    objects = [obj("red", "circle", "left"), obj("blue", "square", "left", "large"), obj("green", "triangle", "up")]
    count, colour, motion = synthetic_questions(objects, "videos/x.mp4")
    assert count == {"question": "how many objects are there?", "answer": "three", "options": ["one", "two", "three"]}
    assert (colour["question"], colour["answer"]) == ("what colour is the object that moves up?", "green")
    assert motion == {"question": "which way does the red circle move?", "answer": "left", "options": list(MOTIONS)}

    # The first object's colour + shape repeats, so the motion question names the blue square; the
    # single "right" mover answers the colour question even though its colour is not unique.
    objects = [obj("red", "circle", "still"), obj("blue", "square", "down"), obj("red", "circle", "right", "large")]
    count, colour, motion = synthetic_questions(objects, "videos/y.mp4")
    assert count["answer"] == "three"
    assert (colour["question"], colour["answer"]) == ("what colour is the object that moves right?", "red")
    assert (motion["question"], motion["answer"]) == ("which way does the blue square move?", "down")

    # Nothing moves: no colour question; "still" answers the motion question.
    count, motion = synthetic_questions([obj("white", "diamond", "still")], "videos/z.mp4")
    assert (count["answer"], motion["question"], motion["answer"]) == (
        "one", MOTION_QUESTION.format(colour="white", shape="diamond"), "still"
    )
    # No object can be named uniquely and no direction has a single mover: only the count.
    assert [q["answer"] for q in synthetic_questions([obj("red", "circle", "up")] * 2, "k")] == ["two"]
    with pytest.raises(ValueError, match="1-3 objects, got 4"):
        synthetic_questions([obj("red", "circle", "up")] * 4, "k")


def test_colour_options_hold_the_answer_and_are_deterministic():
    clip = ["red", "blue", "green"]
    positions = set()
    for i in range(20):
        options = colour_options("green", clip, f"videos/{i}.mp4:q")
        assert options == colour_options("green", clip, f"videos/{i}.mp4:q")  # same seed, same options
        assert len(options) == len(set(options)) == 4 and "green" in options
        # The clip's other colours first (spotting colours must not give the mover away), then absent ones.
        assert {"red", "blue"} <= set(options) and len(set(options) - set(clip)) == 1
        positions.add(options.index("green"))
    assert len(positions) > 1  # the answer's position varies, so it gives nothing away
    # More colours in the clip than distractors: all drawn from the clip.
    crowded = ["red", "blue", "green", "yellow", "purple"]
    options = colour_options("red", crowded, "k")
    assert len(set(options)) == 4 and "red" in options and set(options) <= set(crowded)


# ------------------------------------------------------------------------------------------ real videos


def check_batch(batch, b, t, s):
    assert set(batch) == {"video", "question", "answer", "options", "answer_index", "type", "prior_index", "index",
                          "skipped"}
    assert batch["video"].shape == (b, t, 3, s, s) and batch["video"].dtype == torch.float32
    for key in ("question", "answer"):
        assert isinstance(batch[key], list) and len(batch[key]) == b and all(isinstance(x, str) for x in batch[key])
    assert len(batch["options"]) == b and all(isinstance(o, list) for o in batch["options"])
    for key in ("answer_index", "prior_index", "index"):
        assert batch[key].shape == (b,) and batch[key].dtype == torch.long
    assert len(batch["type"]) == b and all(isinstance(x, str) for x in batch["type"])
    for options, answer, i in zip(batch["options"], batch["answer"], batch["answer_index"].tolist()):
        assert i == (options.index(answer) if options else -1)
    lo = min((0 - m) / sd for m, sd in zip(IMAGENET_MEAN, IMAGENET_STD))
    hi = max((1 - m) / sd for m, sd in zip(IMAGENET_MEAN, IMAGENET_STD))
    assert lo - 1e-4 <= batch["video"].min() and batch["video"].max() <= hi + 1e-4


def test_synthetic_datamodule_writes_questions_and_batches_them(tmp_path):
    cache = str(tmp_path / "cache")
    dm = QADataModule(synthetic=small_synthetic(cache), loader=LoaderOptions(batch_size=4), clip=CLIP)
    dm.prepare_data()
    folder = ensure_synthetic(cache, SyntheticConfig(train=16, val=8, test=8))
    for split in ("train", "val", "test"):
        assert dm.annotation_path(split) == synthetic_qa_path(folder, split) == os.path.join(folder, f"{split}_qa.jsonl")
        with open(os.path.join(folder, f"{split}.jsonl"), encoding="utf-8") as f:
            clips = [json.loads(line) for line in f]
        expected = [{"video": c["video"], **q} for c in clips for q in synthetic_questions(c["objects"], c["video"])]
        with open(dm.annotation_path(split), encoding="utf-8") as f:
            assert [json.loads(line) for line in f] == expected
        assert all(2 <= len(synthetic_questions(c["objects"], c["video"])) <= 3 for c in clips)
    assert not [f for f in os.listdir(folder) if PARTIAL in f]  # atomic writes leave no temporaries

    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    check_batch(batch, 4, 4, 16)
    records = dm.datasets["train"].records
    assert batch["question"] == [records[i].question for i in batch["index"].tolist()]
    assert all(batch["options"]) and (batch["answer_index"] >= 0).all()  # every synthetic question is multiple choice
    predict = next(iter(QADataModule(synthetic=small_synthetic(cache), loader=LoaderOptions(eval_batch_size=3), clip=CLIP)
                        .predict_dataloader()))
    check_batch(predict, 3, 4, 16)
    assert predict["index"].tolist() == [0, 1, 2]  # the test split, in order


def test_files_mixing_open_ended_and_multiple_choice(videos, tmp_path):
    train = tmp_path / "train.csv"
    train.write_text(
        f"video,question,answer,options\n{videos}/a.mp4,how bright?,dark,dark|light\n"
        f"{videos}/c.mp4,what is it?,a grey square,\n"
    )
    dm = QADataModule(train_annotations=str(train), loader=LoaderOptions(batch_size=2), clip=CLIP)
    assert dm.val_dataloader() == []
    batch = next(iter(dm.train_dataloader()))
    check_batch(batch, 2, 4, 16)
    by_index = dict(zip(batch["index"].tolist(), zip(batch["options"], batch["answer_index"].tolist())))
    assert by_index == {0: (["dark", "light"], 0), 1: ([], -1)}
    with pytest.raises(ValueError, match="no test data"):
        dm.test_dataloader()

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(QADataModule, "data")
    cfg = parser.parse_string("data:\n  keys:\n    options: choices\n  clip:\n    crop_scale: [0.9, 1.0]\n")
    dm = parser.instantiate_classes(cfg).data
    assert dm.keys.options == "choices" and dm.clip.crop_scale == (0.9, 1.0) and dm.loader.batch_size == 16
    with pytest.raises(ArgumentError, match="on_bad_video"):
        parser.parse_string("data:\n  on_bad_video: ignore\n")


def test_bad_videos_are_skipped_and_counted_or_raised(videos, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all" * 10)
    rows = [
        {"video": f"{videos}/a.mp4", "question": "q0", "answer": "x"},
        {"video": str(corrupt), "question": "q1", "answer": "y", "options": ["y", "n"]},
        {"video": f"{videos}/b.mp4", "question": "q2", "answer": "n", "options": ["y", "n"]},
    ]
    records = read_qa_annotations(write_jsonl(tmp_path / "r.jsonl", rows))
    ds = QADataset(records, CLIP)
    hole = ds[1]
    assert hole["index"] == 1 and "question" not in hole and hole["skipped"][0]["path"] == str(corrupt)
    assert collate_qa([ds[0], hole, ds[2]])["question"] == ["q0", "q2"]  # left out, not replaced
    assert ds.num_skipped == 1 and ds.skipped_paths == [str(corrupt)]
    ds[1]
    assert ds.num_skipped == 1  # a known bad sample is not retried, nor counted twice
    check_batch(collate_qa([ds[0], ds[2]]), 2, 4, 16)
    raising = QADataset(records, CLIP, on_bad_video="raise")
    assert raising[0]["options"] == [] and raising[0]["answer_index"] == -1
    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        raising[1]
