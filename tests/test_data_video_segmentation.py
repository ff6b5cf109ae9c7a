"""The video segmentation benchmarks (``datamodules.video_segmentation``): COCO RLE decoding checked on masks worked
out by hand, the official frame sampling and input pixels, tiny DAVIS / MOSE / YouTube-VIS folders
(``video_segmentation_fixtures``) read as samples, bad folders failing with the file named, and DAVIS through the real
``trajtok test`` printing VEQ / STQ_EN."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
import video_segmentation_fixtures as fx
from helpers import CONFIGS, run_trajtok
from PIL import Image

from datamodules.coco_rle import decode_rle, decode_segmentation, rle_counts
from datamodules.video_segmentation import (
    VideoSegmentationDataModule,
    collate_video_segmentation,
    model_input,
    sample_frame_indices,
)

# ----------------------------------------------------------------------------------------------------- RLE


@pytest.mark.parametrize("text, counts", [
    ("231", [2, 3, 1]),
    ("2311", [2, 3, 1, 4]),  # the fourth count is stored as its difference to the second: 4 - 3
    ("51110", [5, 1, 1, 2, 1]),  # 2 - 1 and 1 - 1
    ("153L", [1, 5, 3, 1]),  # 'L' = 48 + 28: the 5 bits 11100 with the sign bit set, -4 = 1 - 5
    ("0T3", [0, 100]),  # 100 = 4 + 3 * 32: 'T' = 48 + 4 + 0x20 (more follows), then '3'
    ("", []),
])
def test_compressed_rle_counts_by_hand(text, counts):
    assert rle_counts(text).tolist() == counts


def test_rle_masks_are_column_major():
    # Down column 0 (0, 0), column 1 (1, 1), column 2 (1, 0): runs 2 zeros, 3 ones, 1 zero.
    expected = np.array([[0, 1, 1], [0, 1, 0]], dtype=bool)
    assert np.array_equal(decode_rle({"size": [2, 3], "counts": "231"}), expected)
    assert np.array_equal(decode_rle({"size": [2, 3], "counts": [2, 3, 1]}), expected)
    assert decode_rle({"size": [10, 10], "counts": "0T3"}).all()


def test_rle_round_trips_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(0, 40, 2))
        mask = rng.random((h, w)) < rng.random()
        mask[: h // 2] = rng.random() < 0.5  # long runs: counts of several 5-bit groups, differences of both signs
        for counts in (fx.encode_rle(mask), fx.uncompressed_counts(mask)):
            assert np.array_equal(decode_rle({"size": [h, w], "counts": counts}), mask)


@pytest.mark.parametrize("rle, message", [
    ({"size": [2, 3], "counts": [2, 3]}, "cover 5 pixels"),
    ({"size": [2, 3], "counts": "23"}, "cover 5 pixels"),
    ({"size": [2], "counts": "231"}, "size"),
    ({"size": [2, 3], "counts": "2\x7f1"}, "outside"),
    ({"size": [2, 3], "counts": "2Q"}, "ends inside a count"),
    ({"size": [2, 3], "counts": 6}, "string or a list"),
])
def test_bad_rles_are_refused(rle, message):
    with pytest.raises(ValueError, match=message):
        decode_rle(rle)


def test_segmentations_null_other_size_and_polygons():
    assert not decode_segmentation(None, 2, 3).any()
    with pytest.raises(ValueError, match="for a 3x3 frame"):
        decode_segmentation({"size": [2, 3], "counts": "231"}, 3, 3)
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="pycocotools"):
            decode_segmentation([[0, 0, 2, 0, 2, 2]], 3, 3)


# ------------------------------------------------------------------------------------------- the protocol


def test_frames_are_sampled_as_the_official_drivers_do():
    assert sample_frame_indices(10, 8).tolist() == [0, 1, 3, 4, 5, 6, 8, 9]  # linspace(0, 9, 8).round()
    assert sample_frame_indices(8, 8).tolist() == list(range(8))
    assert sample_frame_indices(5, 8).tolist() == [0, 1, 2, 3, 4, 4, 4, 4]  # padded with the last frame
    assert sample_frame_indices(1, 3).tolist() == [0, 0, 0]


def test_model_input_is_a_bicubic_squash_normalised():
    frame = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    pixels = model_input(frame, 16)
    resized = np.asarray(Image.fromarray(frame).resize((16, 16), Image.BICUBIC), dtype=np.float32) / 255
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    assert pixels.shape == (3, 16, 16) and pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, ((resized - mean) / std).transpose(2, 0, 1))


# ----------------------------------------------------------------------------------------------- folders


def datamodule(benchmark: str, root, **kwargs) -> VideoSegmentationDataModule:
    data = VideoSegmentationDataModule(benchmark, str(root), image_size=32, **kwargs)
    data.setup("test")
    return data


def samples(benchmark: str, root, **kwargs) -> tuple[list[dict], VideoSegmentationDataModule]:
    data = datamodule(benchmark, root, **kwargs)
    return [data.dataset[i] for i in range(len(data.dataset))], data


def test_davis_folder(tmp_path):
    got, _ = samples("davis2017", fx.davis(tmp_path / "DAVIS"))
    assert [s["video_name"] for s in got] == list(fx.DAVIS_VIDEOS)
    for sample, frames in zip(got, ([0, 1, 3, 4, 5, 6, 8, 9], [0, 1, 2, 3, 4, 4, 4, 4])):
        assert sample["video"].shape == (8, 3, 32, 32) and sample["video"].dtype == torch.float32
        assert sample["vos_mask"].dtype == torch.long
        expected = np.stack([fx.instance_ids(t) for t in frames])  # palette indices, 255 (void) included
        assert np.array_equal(sample["vos_mask"].numpy(), expected)
    batch = collate_video_segmentation(got)
    assert batch["video"].shape == (2, 8, 3, 32, 32) and batch["index"].tolist() == [0, 1]
    assert [m.shape for m in batch["vos_mask"]] == [(8, fx.HEIGHT, fx.WIDTH)] * 2


def test_davis_preset_frames_are_224_with_batches_of_one(tmp_path):
    data = VideoSegmentationDataModule("davis2017", str(fx.davis(tmp_path / "DAVIS")))
    batch = next(iter(data.test_dataloader()))
    assert batch["video"].shape == (1, 8, 3, 224, 224)
    assert len(batch["vos_mask"]) == 1 and batch["vos_mask"][0].shape == (8, fx.HEIGHT, fx.WIDTH)
    with pytest.raises(ValueError, match="evaluation benchmark"):
        data.setup("fit")


def test_mose_reads_unannotated_frames_as_background_only_when_asked(tmp_path):
    root = fx.mose(tmp_path / "MOSE")
    with pytest.raises(FileNotFoundError, match=r"8 of the 9 frames of video 'a1' have no mask, e\.g\. .*00001\.png"):
        samples("mose", root)
    got, _ = samples("mose", root, missing_masks="background")
    assert [s["video_name"] for s in got] == ["a1", "b2"]  # sub-folders, sorted
    assert np.array_equal(got[0]["vos_mask"][0].numpy(), fx.instance_ids(0))
    assert not got[0]["vos_mask"][1:].any()


def test_ytvis_json(tmp_path):
    got, data = samples("ytvis2019", fx.ytvis(tmp_path / "ytvis"))
    assert [s["video_name"] for s in got] == ["v1", "v2"] and data.skipped_videos == ["empty"]
    frames = [0, 1, 2, 3, 4, 5, 5, 5]  # v1 has 6 frames, fewer than 8: padded with its last
    assert sample_frame_indices(6, 8).tolist() == frames
    for t, mask in zip(frames, got[0]["vos_mask"].numpy()):
        ids = fx.instance_ids(t)
        expected = np.where(ids == 1, 1, 0) + np.where((ids == 2) & (t > 0), 2, 0)  # object 2 is null in frame 0
        assert np.array_equal(mask, expected)


def test_ytvis_frame_count_mismatch_names_the_file_and_annotation(tmp_path):
    root = fx.ytvis(tmp_path / "ytvis")
    data = json.loads((root / "valid.json").read_text())
    data["annotations"][1]["segmentations"].pop()
    (root / "valid.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"valid\.json, annotations\[1\]: 5 segmentations for the 6 frames of video 'v1'"):
        samples("ytvis2019", root)


def test_ytvis_without_annotations_says_so(tmp_path):
    root = fx.ytvis(tmp_path / "ytvis")
    data = json.loads((root / "valid.json").read_text())
    del data["annotations"]
    (root / "valid.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="ship without masks"):
        samples("ytvis2019", root)


def test_ytvis_rle_of_another_size_names_the_video_and_frame(tmp_path):
    root = fx.ytvis(tmp_path / "ytvis")
    data = json.loads((root / "valid.json").read_text())
    data["annotations"][0]["segmentations"][0] = {"size": [2, 3], "counts": "231"}
    (root / "valid.json").write_text(json.dumps(data))
    data = datamodule("ytvis2019", root)
    with pytest.raises(ValueError, match=r"annotation 0 of video 'v1', frame 0 .*for a 24x32 frame"):
        data.dataset[0]


@pytest.mark.parametrize("damage, error, named", [
    (lambda root: (root / "ImageSets/2017/val.txt").unlink(), FileNotFoundError, "ImageSets/2017/val.txt"),
    (lambda root: shutil.rmtree(root / "JPEGImages/480p/short"), FileNotFoundError, "JPEGImages/480p/short"),
    (lambda root: shutil.rmtree(root / "Annotations/480p/bear"), FileNotFoundError, "Annotations/480p/bear"),
    (lambda root: (root / "Annotations/480p/bear/00003.png").unlink(), FileNotFoundError,
     "Annotations/480p/bear/00003.png"),
])
def test_bad_davis_folders_fail_naming_the_file(tmp_path, damage, error, named):
    root = fx.davis(tmp_path / "DAVIS")
    damage(root)
    with pytest.raises(error, match=re.escape(named)):
        samples("davis2017", root)


@pytest.mark.parametrize("mask, named", [
    (Image.new("RGB", (fx.WIDTH, fx.HEIGHT)), "3-channel"),
    (Image.new("P", (fx.WIDTH + 1, fx.HEIGHT)), "mask is 24x33"),
])
def test_bad_davis_masks_fail_naming_the_file(tmp_path, mask, named):
    root = fx.davis(tmp_path / "DAVIS")
    mask.save(root / "Annotations/480p/short/00002.png")
    data = datamodule("davis2017", root, video_list="")  # "": every sub-folder, sorted
    assert [v.name for v in data.dataset.videos] == ["bear", "short"]
    with pytest.raises(ValueError, match=re.escape("Annotations/480p/short/00002.png") + ".*" + named):
        data.dataset[1]


# -------------------------------------------------------------------------------------------- the command


@pytest.mark.subprocess
@pytest.mark.slow
def test_trajtok_test_prints_veq_and_stq_on_a_davis_folder(tmp_path, cache):
    root = fx.davis(tmp_path / "DAVIS")
    result = run_trajtok(["test", "--config", str(CONFIGS / "segmenter.yaml"), "--config",
                          str(CONFIGS / "benchmarks/davis2017.yaml"), f"--data.init_args.root={root}",
                          "--data.init_args.loader.num_workers=0", "--allow_untrained=true",
                          "--trainer.enable_progress_bar=false"], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    line = re.search(r"Video segmentation \(test, 2 videos\): VEQ ([\d.]+)  STQ_EN ([\d.]+)", output)
    assert line, output[-3000:]
    assert all(0 <= float(v) <= 1 for v in line.groups())
    assert re.search(r"official form \(predicted trajectory 0 dropped\): VEQ [\d.]+  STQ_EN [\d.]+", output)
