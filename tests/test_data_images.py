"""Image-text data as one-frame clips: decoding, annotation files, caption folders, shards, synthetic frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentError, ArgumentParser
from PIL import Image

from datamodules.annotations import read_image_text_annotations
from datamodules.collate import collate_video_text
from datamodules.images import (
    ImageDecodeError,
    ImageShardDataModule,
    ImageTextDataModule,
    ImageTextDataset,
    ShardedImageTextDataset,
    decode_image,
    ensure_synthetic_frames,
    read_image_folder,
)
from datamodules.options import (
    AnnotationKeys,
    FrameOptions,
    LoaderOptions,
    SyntheticOptions,
)
from datamodules.shards import write_shards
from datamodules.synthetic import SyntheticConfig
from datamodules.video import decode_clip

SIZE = 32


def write_image(path, colour=(200, 30, 30), size=(48, 40), mode="RGB", **save) -> np.ndarray:
    """A solid image with a white square in its top-left corner; returns its RGB pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:] = colour
    pixels[:8, :8] = 255
    Image.fromarray(pixels).convert(mode).save(path, **save)
    return pixels


@pytest.fixture
def images(tmp_path):
    """Three captioned PNGs (one a corrupt file) and annotation files naming them."""
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30)]):
        write_image(tmp_path / "imgs" / f"{i}.png", colour)
    (tmp_path / "imgs" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows = [{"image": "imgs/0.png", "caption": ["a red square", "red"]},
            {"image": "imgs/bad.png", "caption": "broken"},
            {"image": "imgs/1.png", "caption": "a green square"}]
    (tmp_path / "ann.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "ann.csv").write_text("image,caption\nimgs/0.png,a red square\nimgs/1.png,a green square\n")
    return tmp_path


def test_decode_image_gives_one_rgb_frame_of_any_mode(tmp_path):
    pixels = write_image(tmp_path / "a.png")
    frames = decode_image(str(tmp_path / "a.png"))
    assert frames.dtype == torch.uint8 and frames.shape == (1, 40, 48, 3)
    assert torch.equal(frames[0], torch.from_numpy(pixels))
    write_image(tmp_path / "g.png", mode="L")
    write_image(tmp_path / "p.png", mode="RGBA")
    assert decode_image(str(tmp_path / "g.png")).shape == (1, 40, 48, 3)
    assert decode_image((tmp_path / "p.png").read_bytes(), name="x.png").shape == (1, 40, 48, 3)


def test_decode_image_applies_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    write_image(tmp_path / "r.jpg", size=(48, 40), exif=exif, quality=95)
    frames = decode_image(str(tmp_path / "r.jpg"))
    assert frames.shape == (1, 48, 40, 3)
    assert frames[0, :8, -8:].float().mean() > 240  # the white corner moved to the top right


def test_broken_images_raise_naming_the_file(tmp_path, images):
    with pytest.raises(ImageDecodeError, match="bad.png: not a readable image"):
        decode_image(str(images / "imgs" / "bad.png"))
    with pytest.raises(ImageDecodeError, match="missing.png: image not found"):
        decode_image(str(tmp_path / "missing.png"))
    truncated = (images / "imgs" / "0.png").read_bytes()[:60]
    with pytest.raises(ImageDecodeError, match="shard.tar:k.png"):
        decode_image(truncated, name="shard.tar:k.png")


def test_annotation_files_give_records_relative_to_their_folder(images):
    jsonl = read_image_text_annotations(str(images / "ann.jsonl"))
    csv = read_image_text_annotations(str(images / "ann.csv"))
    assert [r.image for r in jsonl] == [str(images / p) for p in ("imgs/0.png", "imgs/bad.png", "imgs/1.png")]
    assert jsonl[0].captions == ("a red square", "red") and jsonl[0].origin.endswith("ann.jsonl, row 1")
    assert [r.captions for r in csv] == [("a red square",), ("a green square",)]
    (images / "other.jsonl").write_text(json.dumps({"img": "imgs/0.png", "text": "red"}) + "\n")
    assert read_image_text_annotations(str(images / "other.jsonl"), keys=AnnotationKeys(image="img", caption="text"))[0].captions == ("red",)
    (images / "bad.jsonl").write_text(json.dumps({"image": "imgs/0.png", "caption": "ok"}) + "\n"
                                      + json.dumps({"image": "imgs/1.png"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl, row 2: missing key 'caption'"):
        read_image_text_annotations(str(images / "bad.jsonl"))


def test_caption_folders_pair_images_with_their_txt(tmp_path):
    for name in ("b/2", "a/1", "a/0"):
        write_image(tmp_path / f"{name}.jpg")
        (tmp_path / f"{name}.txt").write_text(f"caption {name}\n")
    (tmp_path / "a" / "notes.md").write_text("not a sample")
    write_image(tmp_path / ".hidden" / "x.png")
    records = read_image_folder(str(tmp_path))
    assert [r.captions[0] for r in records] == ["caption a/0", "caption a/1", "caption b/2"]
    write_image(tmp_path / "b" / "3.png")
    with pytest.raises(ValueError, match=r"3.png: no caption file .*3.txt"):
        read_image_folder(str(tmp_path))


def test_dataset_gives_one_frame_clips_and_skips_a_corrupt_image(images):
    records = read_image_text_annotations(str(images / "ann.jsonl"))
    dataset = ImageTextDataset(records, FrameOptions(image_size=SIZE))
    sample = dataset[0]
    assert sample["video"].shape == (1, 3, SIZE, SIZE) and sample["video"].dtype == torch.float32
    assert sample["text"] == "a red square" and sample["captions"] == ["a red square", "red"]
    assert sample["index"] == 0 and sample["skipped"] == []
    hole = dataset[1]  # bad.png: left out of its batch, and reported
    assert hole["index"] == 1 and "video" not in hole
    assert [(r["index"], r["reason"].split(":")[0]) for r in hole["skipped"]] == [(1, "not a readable image")]
    assert hole["skipped"][0]["origin"].endswith("ann.jsonl, row 2") and dataset.num_skipped == 1
    batch = collate_video_text([dataset[i] for i in range(3)])
    assert batch["video"].shape == (2, 1, 3, SIZE, SIZE) and batch["index"].tolist() == [0, 2]
    assert len(batch["skipped"]) == 1
    strict = ImageTextDataset(records, FrameOptions(image_size=SIZE), on_bad_image="raise")
    with pytest.raises(ImageDecodeError, match=r"bad.png: .*\(sample of .*ann.jsonl, row 2\)"):
        strict[1]


def test_training_samples_draw_a_caption_and_a_crop(images):
    records = read_image_text_annotations(str(images / "ann.jsonl"))[:1]
    dataset = ImageTextDataset(records, FrameOptions(image_size=SIZE, crop_scale=(0.3, 0.5)), train=True)
    torch.manual_seed(0)
    samples = [dataset[0] for _ in range(12)]
    assert {s["text"] for s in samples} == {"a red square", "red"}
    assert len({s["video"].sum().item() for s in samples}) > 1


def test_datamodule_reads_files_and_folders_and_names_a_bad_option(images):
    module = ImageTextDataModule(train_annotations=str(images / "ann.csv"), test_annotations=str(images / "ann.jsonl"),
                                 clip=FrameOptions(image_size=SIZE), loader=LoaderOptions(batch_size=2))
    batch = next(iter(module.train_dataloader()))
    assert batch["video"].shape == (2, 1, 3, SIZE, SIZE) and sorted(batch["index"].tolist()) == [0, 1]
    test = list(module.test_dataloader())
    # The bad image is left out: every other image once.
    assert torch.cat([b["index"] for b in test if "index" in b]).tolist() == [0, 2]
    assert sum(len(b["skipped"]) for b in test) == 1
    assert module.val_dataloader() == []
    write_image(images / "folder" / "x.png")
    (images / "folder" / "x.txt").write_text("a red square")
    folder = ImageTextDataModule(train_annotations=str(images / "folder"), clip=FrameOptions(image_size=SIZE),
                                 loader=LoaderOptions(batch_size=1))
    assert next(iter(folder.train_dataloader()))["text"] == ["a red square"]
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ImageTextDataModule, "data")
    with pytest.raises(ArgumentError, match="on_bad_image"):
        parser.parse_string("data:\n  on_bad_image: ignore\n")


def test_shards_of_images_and_captions_are_read_as_one_frame_clips(images, tmp_path):
    entries = [("k0", str(images / "imgs/0.png"), ["a red square", "red"]),
               ("k1", str(images / "imgs/bad.png"), "broken"),
               ("k2", str(images / "imgs/1.png"), "a green square")]
    shards = write_shards(entries, str(tmp_path / "shards" / "img-%03d.tar"), samples_per_shard=2)
    assert len(shards) == 2
    dataset = ShardedImageTextDataset(shards, FrameOptions(image_size=SIZE))
    samples = list(dataset)
    assert [s["index"] for s in samples] == [0, 1_000_000]
    assert samples[0]["video"].shape == (1, 3, SIZE, SIZE)
    assert samples[0]["captions"] == ["a red square", "red"] and samples[1]["text"] == "a green square"
    assert dataset.num_skipped == 1 and dataset.skipped_paths[0].endswith("img-000.tar:k1.png")
    assert samples[1]["skipped"][0]["index"] == 1
    module = ImageShardDataModule(train_shards=str(tmp_path / "shards" / "img-{000..001}.tar"), clip=FrameOptions(image_size=SIZE),
                                  loader=LoaderOptions(batch_size=1), shuffle_buffer=0)
    batches = list(module.train_dataloader())
    assert [b["video"].shape for b in batches] == [(1, 1, 3, SIZE, SIZE)] * 2
    with pytest.raises(ImageDecodeError, match=r"img-000.tar:k1.png"):
        list(ShardedImageTextDataset(shards, FrameOptions(image_size=SIZE), on_bad_video="raise"))


def test_synthetic_frames_are_the_middle_frames_of_the_clips_with_their_captions(tmp_path):
    cfg = SyntheticConfig(train=6, val=2, test=2, num_frames=4)
    folder = ensure_synthetic_frames(str(tmp_path), cfg)
    assert ensure_synthetic_frames(str(tmp_path), cfg) == folder  # written once
    rows = [json.loads(line) for line in Path(folder, "train.jsonl").read_text().splitlines()]
    videos = [json.loads(line) for line in (tmp_path / cfg.name() / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and [r["caption"] for r in rows] == [v["caption"] for v in videos]
    middle = decode_clip(str(tmp_path / cfg.name() / videos[0]["video"]), 1, "middle").frames
    assert torch.equal(decode_image(f"{folder}/{rows[0]['image']}"), middle)
    module = ImageTextDataModule(
        synthetic=SyntheticOptions(cache_dir=str(tmp_path), train=6, val=2, test=2, num_frames=4),
        clip=FrameOptions(image_size=SIZE), loader=LoaderOptions(batch_size=3),
    )
    module.prepare_data()
    batch = next(iter(module.train_dataloader()))
    assert batch["video"].shape == (3, 1, 3, SIZE, SIZE) and set(batch["text"]) <= {c for r in rows for c in r["caption"]}
