"""Classification data: labelled annotation files and class folders, the class list (given, derived,
checkpointed), the synthetic tasks, and batches of real mp4 files written here with PyAV."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser

from datamodules.annotations import (
    AnnotationKeys,
    LabelledVideoRecord,
    read_labelled_annotations,
)
from datamodules.classification import (
    SYNTHETIC_CLASS_NAMES,
    ClassificationDataModule,
    ClassificationDataset,
    class_names_from_labels,
    collate_classification,
    encode_labels,
    load_class_names,
)
from datamodules.options import ClipOptions, LoaderOptions, SyntheticOptions
from datamodules.synthetic import SyntheticConfig, ensure_synthetic, write_mp4
from datamodules.transforms import IMAGENET_MEAN, IMAGENET_STD
from datamodules.video import VideoDecodeError
from trajtok.files import PARTIAL

CLIP = ClipOptions(num_frames=4, image_size=16)


def small_synthetic(cache: str) -> SyntheticOptions:
    return SyntheticOptions(cache_dir=cache, train=16, val=8, test=8)


def write_video(path, brightness: int) -> str:
    """A 6-frame 16x16 clip of one grey level (real H.264 / MPEG-4, decoded by PyAV like any video)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_mp4(str(path), np.full((6, 16, 16, 3), brightness, np.uint8), fps=8)
    return str(path)


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Folder with a.mp4 .. e.mp4, of increasing brightness."""
    root = tmp_path_factory.mktemp("videos")
    for i, name in enumerate("abcde"):
        write_video(root / f"{name}.mp4", 40 + 40 * i)
    return root


# ------------------------------------------------------------------------------------------------ reading


def test_jsonl_json_and_csv_rows_with_names_and_indices(tmp_path):
    jsonl = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"video": "v/a.mp4", "label": " cat "},
            {"video": "v/b.mp4", "label": 2, "start": 0.5, "end": 2, "mask": "m.npz", "graph": "g.npz"},
        ],
    )
    a, b = read_labelled_annotations(jsonl)
    assert a == LabelledVideoRecord(video=str(tmp_path / "v/a.mp4"), label="cat", origin=f"{jsonl}, row 1")
    assert (b.label, b.start_sec, b.end_sec) == (2, 0.5, 2.0)
    assert (b.mask, b.graph) == (str(tmp_path / "m.npz"), str(tmp_path / "g.npz"))

    json_list = tmp_path / "b.json"
    json_list.write_text(json.dumps([{"video": "x.mp4", "label": "3"}, {"video": "y.mp4", "label": 0}]))
    x, y = read_labelled_annotations(str(json_list), root="/data")
    assert (x.video, x.label, y.label) == ("/data/x.mp4", "3", 0)  # a JSON string stays a name

    csv = tmp_path / "c.csv"
    csv.write_text("video,label,start,end\nx.mp4,dog,,\ny.mp4,3,1,2\nz.mp4, 0 ,,\n", encoding="utf-8")
    x, y, z = read_labelled_annotations(str(csv))
    assert (x.label, y.label, z.label) == ("dog", 3, 0)  # CSV cells are text: digits are an index
    assert (y.start_sec, y.end_sec) == (1.0, 2.0) and y.origin == f"{csv}, row 3"

    keys = AnnotationKeys(video="path", label="class_id", start="t0")
    (r,) = read_labelled_annotations(write_jsonl(tmp_path / "d.jsonl", [{"path": "p.mp4", "class_id": 1, "t0": 4}]), "", keys)
    assert (r.video, r.label, r.start_sec) == ("p.mp4", 1, 4.0)


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ({"label": "cat"}, "missing key 'video'"),
        ({"video": "a.mp4"}, "missing key 'label'"),
        ({"video": "a.mp4", "label": None}, "missing key 'label'"),
        ({"video": "a.mp4", "label": True}, "'label' must be a class name or an integer class index, got True"),
        ({"video": "a.mp4", "label": 1.0}, "'label' must be a class name or an integer"),
        ({"video": "a.mp4", "label": ["cat"]}, "'label' must be a class name or an integer"),
        ({"video": "a.mp4", "label": -1}, "'label' must be a class index >= 0, got -1"),
        ({"video": "a.mp4", "label": "  "}, "blank class name"),
        ({"video": 3, "label": "cat"}, "'video' must be"),
        ({"video": "a.mp4", "label": "cat", "start": 2, "end": 1}, "greater than start"),
        ("a.mp4 cat", "expected an object"),
    ],
)
def test_malformed_rows_name_file_and_row(tmp_path, bad_row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"video": "ok.mp4", "label": "cat"}, bad_row])
    with pytest.raises(ValueError, match=f"bad.jsonl, row 2: .*{message}"):
        read_labelled_annotations(path)


def test_malformed_csv_label_and_out_of_range_or_unknown_labels(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("video,label\na.mp4,cat\nb.mp4,-2\n")
    with pytest.raises(ValueError, match="bad.csv, row 3: 'label' must be a class index >= 0, got -2"):
        read_labelled_annotations(str(csv))
    records = read_labelled_annotations(write_jsonl(tmp_path / "r.jsonl", [{"video": "a.mp4", "label": "cat"},
                                                                          {"video": "b.mp4", "label": 2}]))
    assert encode_labels(records, ["dog", "cat", "emu"]) == [1, 2]
    with pytest.raises(ValueError, match="r.jsonl, row 2: class index 2 is out of range for 2 classes"):
        encode_labels(records, ["dog", "cat"])
    with pytest.raises(ValueError, match=r"r.jsonl, row 1: unknown class 'cat'; the classes are 'dog', 'emu'"):
        encode_labels(records, ["dog", "emu", "x"])


def test_class_folders(tmp_path):
    root = tmp_path / "train"
    for rel in ("dog/b.mp4", "cat/z.mkv", "cat/a.MP4", "cat/deeper/c.mp4", "cat/.hidden.mp4", ".git/x.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")  # listing only: nothing is decoded here
    (root / "cat" / "notes.txt").write_text("not a video")
    (root / "empty").mkdir()
    records = read_labelled_annotations(str(root), root="/ignored")
    assert [(os.path.relpath(r.video, root), r.label) for r in records] == [
        ("cat/a.MP4", "cat"), ("cat/z.mkv", "cat"), ("cat/deeper/c.mp4", "cat"), ("dog/b.mp4", "dog"),
    ]
    assert records[0].origin == str(root / "cat" / "a.MP4")
    assert class_names_from_labels(records, records) == ["cat", "dog"]

    (root / "stray.avi").write_bytes(b"")
    with pytest.raises(ValueError, match="stray.avi: a video outside any class folder"):
        read_labelled_annotations(str(root))
    (tmp_path / "none" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="none: no video files"):
        read_labelled_annotations(str(tmp_path / "none"))


# ------------------------------------------------------------------------------------------- class names


def test_class_names_from_a_list_and_from_files(tmp_path):
    assert load_class_names([" b", "a"]) == ["b", "a"]  # the given order is the index order
    txt = tmp_path / "names.txt"
    txt.write_text("walk\nrun \n\njump\n", encoding="utf-8")
    assert load_class_names(str(txt)) == ["walk", "run", "jump"]
    js = tmp_path / "names.json"
    js.write_text(json.dumps(["x", "y"]))
    assert load_class_names(str(js)) == ["x", "y"]

    txt.write_text("walk\nrun\nwalk\n")
    with pytest.raises(ValueError, match=r"names.txt, row 3: class name 'walk' repeats .*names.txt, row 1"):
        load_class_names(str(txt))
    js.write_text(json.dumps(["x", 3]))
    with pytest.raises(ValueError, match="names.json, row 2: a class name must be a non-blank string, got 3"):
        load_class_names(str(js))
    with pytest.raises(ValueError, match=r"class_names\[1\]: a class name must be a non-blank string"):
        load_class_names(["a", ""])
    with pytest.raises(ValueError, match="must be .txt"):
        load_class_names(str(tmp_path / "names.csv"))


def test_class_names_derived_from_the_data():
    def recs(*labels):
        return [LabelledVideoRecord(video=f"{i}.mp4", label=x, origin=f"f, row {i + 1}") for i, x in enumerate(labels)]

    assert class_names_from_labels(recs("dog", "cat", "dog"), recs("dog", "cat", "dog", "cat")) == ["cat", "dog"]
    # Integer labels: N from every split, so a class seen only in val still gets its index.
    assert class_names_from_labels(recs(0, 2), recs(0, 2, 4)) == ["0", "1", "2", "3", "4"]
    with pytest.raises(ValueError, match="f, row 2: label 1 is a class index, but f, row 1 has a class name"):
        class_names_from_labels(recs("dog", 1), recs("dog", 1))


# ---------------------------------------------------------------------------------------- real videos


def check_batch(batch, b, t, s, labels):
    assert batch["video"].shape == (b, t, 3, s, s) and batch["video"].dtype == torch.float32
    assert batch["label"].dtype == torch.long and batch["label"].tolist() == labels
    assert batch["index"].shape == (b,) and batch["index"].dtype == torch.long
    lo = min((0 - m) / sd for m, sd in zip(IMAGENET_MEAN, IMAGENET_STD))
    hi = max((1 - m) / sd for m, sd in zip(IMAGENET_MEAN, IMAGENET_STD))
    assert lo - 1e-4 <= batch["video"].min() and batch["video"].max() <= hi + 1e-4


def test_datamodule_on_csv_files_with_names_from_train(videos, tmp_path):
    train = tmp_path / "train.csv"
    train.write_text(f"video,label\n{videos}/a.mp4,run\n{videos}/b.mp4,jump\n{videos}/c.mp4,run\n{videos}/d.mp4,walk\n")
    val = tmp_path / "val.csv"
    val.write_text(f"video,label\n{videos}/e.mp4,walk\n{videos}/a.mp4,jump\n")
    dm = ClassificationDataModule(train_annotations=str(train), val_annotations=str(val), loader=LoaderOptions(batch_size=4),
                                  clip=CLIP)
    assert dm.resolve_class_names() == ["jump", "run", "walk"] and dm.num_classes == 3  # before any setup
    dm.setup("fit")
    (batch,) = list(dm.train_dataloader())
    order = batch["index"].tolist()
    check_batch(batch, 4, 4, 16, [[1, 0, 1, 2][i] for i in order])
    (val_batch,) = list(dm.val_dataloader())
    check_batch(val_batch, 2, 4, 16, [2, 0])
    assert val_batch["index"].tolist() == [0, 1] and set(val_batch) == {"video", "label", "index", "skipped"}
    # Eval pixels follow the clip: e.mp4 (brightest) first, a.mp4 second.
    assert val_batch["video"][0].mean() > val_batch["video"][1].mean()
    assert dm.annotation_path("test") is None
    with pytest.raises(ValueError, match="no test data"):
        dm.test_dataloader()

    val.write_text(f"video,label\n{videos}/e.mp4,walk\n{videos}/a.mp4,swim\n")
    dm = ClassificationDataModule(train_annotations=str(train), val_annotations=str(val), clip=CLIP)
    with pytest.raises(ValueError, match=r"val.csv, row 3: unknown class 'swim'; the classes are 'jump', 'run', 'walk'"):
        dm.setup("fit")


def test_datamodule_with_indices_class_folders_and_a_names_file(videos, tmp_path):
    test = write_jsonl(tmp_path / "test.jsonl", [{"video": "a.mp4", "label": 3}, {"video": "b.mp4", "label": 1}])
    dm = ClassificationDataModule(root=str(videos), test_annotations=test, loader=LoaderOptions(eval_batch_size=2),
                                  clip=CLIP)
    assert dm.class_names == ["0", "1", "2", "3"]  # no train split: indices name themselves
    check_batch(next(iter(dm.predict_dataloader())), 2, 4, 16, [3, 1])

    names = tmp_path / "names.txt"
    names.write_text("run\njump\nwalk\n")
    folders = tmp_path / "folders"
    for cls, video in (("walk", "a"), ("run", "b"), ("run", "c")):
        os.makedirs(folders / cls, exist_ok=True)
        shutil.copy(videos / f"{video}.mp4", folders / cls / f"{video}.mp4")
    dm = ClassificationDataModule(train_annotations=str(folders), class_names=str(names), loader=LoaderOptions(batch_size=3),
                                  clip=CLIP)
    assert dm.num_classes == 3 and dm.val_dataloader() == []
    batch = next(iter(dm.train_dataloader()))
    check_batch(batch, 3, 4, 16, [[0, 0, 2][i] for i in batch["index"].tolist()])  # run/b, run/c, walk/a


def test_bad_videos_are_skipped_and_counted_or_raised(videos, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all" * 10)
    rows = [{"video": f"{videos}/a.mp4", "label": "x"}, {"video": str(corrupt), "label": "y"},
            {"video": f"{videos}/b.mp4", "label": "z"}]
    records = read_labelled_annotations(write_jsonl(tmp_path / "r.jsonl", rows))
    ds = ClassificationDataset(records, ["x", "y", "z"], CLIP)
    hole = ds[1]
    assert hole["index"] == 1 and "label" not in hole and hole["skipped"][0]["path"] == str(corrupt)
    assert collate_classification([ds[0], hole, ds[2]])["label"].tolist() == [0, 2]  # left out, not replaced
    assert ds.num_skipped == 1 and ds.skipped_paths == [str(corrupt)]
    ds[1]
    assert ds.num_skipped == 1  # a known bad sample is not retried, nor counted twice
    raising = ClassificationDataset(records, ["x", "y", "z"], CLIP, on_bad_video="raise")
    assert raising[0]["label"] == 0
    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        raising[1]


# ------------------------------------------------------------------------------------------- synthetic


def test_synthetic_tasks_count_the_objects_of_each_row(cache):
    folder = ensure_synthetic(cache, SyntheticConfig(train=16, val=8, test=8))
    for task, count in (("moving", lambda objs: sum(o["motion"] != "still" for o in objs)),
                        ("count", lambda objs: len(objs) - 1)):
        dm = ClassificationDataModule(synthetic=small_synthetic(cache), synthetic_task=task, clip=CLIP)
        dm.prepare_data()
        assert dm.class_names == list(SYNTHETIC_CLASS_NAMES[task])
        dm.setup()
        for split in ("train", "val", "test"):
            assert dm.annotation_path(split) == os.path.join(folder, f"{split}_{task}.jsonl")
            with open(os.path.join(folder, f"{split}.jsonl"), encoding="utf-8") as f:
                expected = [count(json.loads(line)["objects"]) for line in f]
            assert dm.datasets[split].labels == expected
        assert len(set(dm.datasets["train"].labels)) > 1  # the check above is not vacuous
    assert SYNTHETIC_CLASS_NAMES["moving"][3] == "three objects move"
    assert not [f for f in os.listdir(folder) if PARTIAL in f]  # atomic writes leave no temporaries


def test_synthetic_batches_with_pseudo_labels(cache):
    dm = ClassificationDataModule(synthetic=small_synthetic(cache), load_pseudo_labels=True, loader=LoaderOptions(batch_size=4),
                                  clip=CLIP)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    check_batch(batch, 4, 4, 16, [dm.datasets["train"].labels[i] for i in batch["index"].tolist()])
    assert batch["mask"].shape == (4, 4, 16, 16) and batch["mask"].dtype == torch.uint8
    g = batch["graph"]
    assert g.dtype == torch.long and g.shape[0] == 4 and g.shape[2] == 4 and 2 <= g.shape[1] <= 4  # + background
    assert batch["stuff"].shape == g.shape[:2] and batch["stuff"].sum(1).tolist() == [1] * 4
    assert len(dm.train_dataloader()) == 4  # 16 clips, full batches
    assert "mask" not in next(iter(ClassificationDataModule(synthetic=small_synthetic(cache)).val_dataloader()))


# --------------------------------------------------------------------------------- checkpoint and yaml


def test_class_names_round_trip_through_state_dict(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"video": "a.mp4", "label": "dog"}, {"video": "b.mp4", "label": "cat"}])
    state = ClassificationDataModule(train_annotations=train).state_dict()
    assert state == {"class_names": ["cat", "dog"]}

    fresh = ClassificationDataModule(train_annotations=train, class_names=None)
    fresh.load_state_dict({"class_names": ["dog", "cat"]})  # nothing set yet: the checkpoint's order wins
    assert fresh.class_names == ["dog", "cat"]
    fresh.load_state_dict({"class_names": ["dog", "cat"]})  # the same list again is fine

    given = ClassificationDataModule(train_annotations=train, class_names=["cat", "dog", "emu"])
    with pytest.raises(ValueError, match=r"checkpoint \['cat', 'dog'\], datamodule \['cat', 'dog', 'emu'\]"):
        given.load_state_dict(state)
    synthetic = ClassificationDataModule(synthetic_task="count")
    with pytest.raises(ValueError, match="checkpoint .*datamodule \\['one object'"):
        synthetic.load_state_dict(state)


def test_built_from_yaml_by_jsonargparse(tmp_path):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ClassificationDataModule, "data")
    cfg = parser.parse_string("data:\n  class_names: [b, a]\n  synthetic_task: count\n  clip:\n    crop_scale: [0.9, 1.0]\n")
    dm = parser.instantiate_classes(cfg).data
    assert dm.class_names == ["b", "a"] and dm.synthetic_task == "count" and dm.clip.crop_scale == (0.9, 1.0)
    names = tmp_path / "n.txt"
    names.write_text("p\nq\n")
    cfg = parser.parse_string(f"data:\n  class_names: {names}\n")
    assert parser.instantiate_classes(cfg).data.class_names == ["p", "q"]
    with pytest.raises(ValueError, match="synthetic_task"):
        ClassificationDataModule(synthetic_task="colour")
