"""VideoTextDataModule: the batch contract on the synthetic default, real msrvtt24 clips, yaml building."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from helpers import MSRVTT24, needs_msrvtt24
from jsonargparse import ArgumentError, ArgumentParser

from datamodules.clips import drop_missing_trajectories
from datamodules.collate import collate_video_text
from datamodules.options import (
    AnnotationKeys,
    ClipOptions,
    LoaderOptions,
    SyntheticOptions,
)
from datamodules.synthetic import SyntheticConfig
from datamodules.transforms import IMAGENET_MEAN, IMAGENET_STD
from datamodules.video_text import VideoTextDataModule

SMALL = {"clip": ClipOptions(num_frames=8, image_size=32), "loader": LoaderOptions(batch_size=4)}


def check_contract(batch, b, t, s):
    assert batch["video"].shape == (b, t, 3, s, s) and batch["video"].dtype == torch.float32
    assert batch["index"].shape == (b,) and batch["index"].dtype == torch.long
    assert isinstance(batch["text"], list) and len(batch["text"]) == b and all(isinstance(x, str) for x in batch["text"])
    assert len(batch["captions"]) == b and all(batch["text"][i] in batch["captions"][i] for i in range(b))
    # Normalised pixels of [0, 1] images lie between (0 - mean) / std and (1 - mean) / std.
    lo = min((0 - m) / sd for m, sd in zip(IMAGENET_MEAN, IMAGENET_STD))
    hi = max((1 - m) / sd for m, sd in zip(IMAGENET_MEAN, IMAGENET_STD))
    assert lo - 1e-4 <= batch["video"].min() and batch["video"].max() <= hi + 1e-4


def test_default_synthetic_batches_follow_the_contract(cache):
    dm = VideoTextDataModule(synthetic=SyntheticOptions(cache_dir=cache, train=8, val=4, test=4), **SMALL)
    dm.prepare_data()
    name = SyntheticConfig(seed=0, train=8, val=4, test=4).name()
    assert os.path.isfile(os.path.join(cache, name, "train.jsonl"))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    check_contract(batch, 4, 8, 32)
    assert batch["mask"].shape == (4, 8, 32, 32) and batch["mask"].dtype == torch.uint8
    g = batch["graph"]
    assert g.dtype == torch.long and g.shape[0] == 4 and g.shape[2] == 8 and 2 <= g.shape[1] <= 4  # + background
    stuff = batch["stuff"]
    assert stuff.dtype == torch.bool and stuff.shape == g.shape[:2] and stuff.sum(1).tolist() == [1] * 4
    for b in range(4):  # every trajectory entry points at a segment that has pixels in that frame
        for m, t in (g[b] > 0).nonzero().tolist():
            assert (batch["mask"][b, t] == g[b, m, t]).any()
    assert (g > 0).any()

    val = list(dm.val_dataloader())
    assert sum(len(x["index"]) for x in val) == 4
    check_contract(val[0], 4, 8, 32)
    assert all(v["text"][i] == v["captions"][i][0] for v in val for i in range(len(v["text"])))  # eval: first
    assert sorted(torch.cat([v["index"] for v in val]).tolist()) == [0, 1, 2, 3]

    dm.setup("test")
    test_batches = list(dm.test_dataloader())
    predict_batches = list(dm.predict_dataloader())
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(test_batches, predict_batches))  # deterministic eval


def test_collate_pads_graphs_with_absent_rows():
    samples = [
        {"video": torch.zeros(2, 3, 4, 4), "text": "a", "captions": ["a"], "index": 3,
         "mask": torch.ones(2, 4, 4, dtype=torch.uint8), "graph": torch.tensor([[1, 1]])},
        {"video": torch.ones(2, 3, 4, 4), "text": "b", "captions": ["b", "c"], "index": 5,
         "mask": torch.ones(2, 4, 4, dtype=torch.uint8), "graph": torch.tensor([[1, 0], [0, 1], [1, 1]])},
    ]
    samples[1]["stuff"] = torch.tensor([False, False, True])
    batch = collate_video_text(samples)
    assert batch["graph"].shape == (2, 3, 2) and batch["graph"][0, 1:].sum() == 0
    assert batch["stuff"].tolist() == [[False] * 3, [False, False, True]]  # padded, and absent flags are False
    assert batch["index"].tolist() == [3, 5] and batch["captions"] == [["a"], ["b", "c"]]


def test_trajectories_cropped_away_become_absent():
    masks = torch.zeros(2, 4, 4, dtype=torch.uint8)
    masks[0, :2] = 1
    masks[1, :2] = 2  # id 1 no longer in frame 1
    graph = torch.tensor([[1, 1], [2, 2]])
    assert drop_missing_trajectories(masks, graph).tolist() == [[1, 0], [0, 2]]


@needs_msrvtt24
def test_msrvtt24_through_the_datamodule():
    dm = VideoTextDataModule(
        test_annotations=str(MSRVTT24 / "captions.jsonl"), clip=ClipOptions(num_frames=8, image_size=64),
        loader=LoaderOptions(eval_batch_size=6),
    )
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    check_contract(batch, 6, 8, 64)
    assert "mask" not in batch and batch["text"][0] == "man give talk"
    assert dm.datasets["test"].num_skipped == 0
    assert dm.val_dataloader() == []  # no validation set given: Lightning skips validation
    with pytest.raises(ValueError, match="no train data"):
        dm.train_dataloader()


def test_built_from_yaml_by_jsonargparse(tmp_path):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(VideoTextDataModule, "data")
    cfg = parser.parse_string(
        f"data:\n  synthetic:\n    cache_dir: {tmp_path}\n  clip:\n    num_frames: 4\n    crop_scale: [0.9, 1.0]\n"
        "  loader:\n    batch_size: 8\n  on_bad_video: raise\n"
    )
    dm = parser.instantiate_classes(cfg).data
    assert isinstance(dm, VideoTextDataModule)
    assert dm.clip == ClipOptions(num_frames=4, crop_scale=(0.9, 1.0)) and dm.loader == LoaderOptions(batch_size=8)
    assert dm.synthetic_options.cache_dir == str(tmp_path) and dm.on_bad_video == "raise" and dm.synthetic
    with pytest.raises(ArgumentError, match="on_bad_video"):
        parser.parse_string("data:\n  on_bad_video: ignore\n")


def test_option_groups_reach_checkpoints_as_plain_data(tmp_path):
    """Checkpoints store the datamodule's hyperparameters and are read with ``weights_only=True``, which
    refuses classes: the option groups must be stored as dicts."""
    dm = VideoTextDataModule(clip=ClipOptions(num_frames=4), loader=LoaderOptions(batch_size=2))
    torch.save(dict(dm.hparams), tmp_path / "hparams.pt")
    hparams = torch.load(tmp_path / "hparams.pt", weights_only=True)
    assert hparams["clip"]["num_frames"] == 4 and hparams["loader"]["batch_size"] == 2
    assert hparams["synthetic"]["train"] == SyntheticOptions().train
    assert hparams["keys"] == dataclasses.asdict(AnnotationKeys())


def test_annotation_keys_are_an_option_group(tmp_path):
    """``keys`` reads a file with other column names (``--data.init_args.keys.caption=sentence``); the synthetic
    set's own files keep the default names whatever ``keys`` says."""
    annotations = tmp_path / "clips.jsonl"
    annotations.write_text('{"clip": "a.mp4", "sentence": "a dog runs", "t0": 1.5}\n', encoding="utf-8")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(VideoTextDataModule, "data")
    cfg = parser.parse_args([f"--data.test_annotations={annotations}", "--data.keys.video=clip",
                             "--data.keys.caption=sentence", "--data.keys.start=t0"])
    dm = parser.instantiate_classes(cfg).data
    assert dm.keys == AnnotationKeys(video="clip", caption="sentence", start="t0")
    (record,) = dm.read_records("test", str(annotations))
    assert (record.video, record.captions, record.start_sec) == (str(tmp_path / "a.mp4"), ("a dog runs",), 1.5)
    with pytest.raises(ArgumentError, match="keys.captions"):  # a misspelt key name is refused, named
        parser.parse_args(["--data.keys.captions=sentence"])
    assert VideoTextDataModule(keys=AnnotationKeys(caption="sentence")).reading() == (None, AnnotationKeys())
