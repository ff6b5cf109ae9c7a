"""One list of video extensions (``datamodules.video.VIDEO_EXTENSIONS``): a clip of any of them, ``.m4v`` among them
(an MP4 container under Apple's name), is found by class folders, by the folders ``trajtok pseudo-label`` reads, by the
public data sets' readers and in tar shards alike."""

from __future__ import annotations

import os
from pathlib import Path

import benchmark_fixtures as fx
import numpy as np
import pytest

from datamodules.annotations import read_class_folders
from datamodules.options import ClipOptions
from datamodules.public_sets import (
    read_activitynet,
    read_didemo,
    read_kinetics,
    read_ssv2,
)
from datamodules.shards import ShardedVideoTextDataset, write_shards
from datamodules.synthetic import write_mp4
from datamodules.video import VIDEO_EXTENSIONS
from datamodules.videos_to_label import folder_items


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_m4v_is_a_video_extension():
    assert ".m4v" in VIDEO_EXTENSIONS and VIDEO_EXTENSIONS[0] == ".mp4"
    assert all(e == e.lower() and e.startswith(".") for e in VIDEO_EXTENSIONS)


@pytest.mark.parametrize("ext", VIDEO_EXTENSIONS)
def test_class_folders_and_pseudo_label_folders_find_every_video_extension(tmp_path, ext):
    clip = touch(tmp_path / "videos" / "cat" / f"a{ext.upper() if ext == '.m4v' else ext}")
    touch(tmp_path / "videos" / "cat" / "notes.txt")
    assert [(r.video, r.label) for r in read_class_folders(str(tmp_path / "videos"))] == [(str(clip), "cat")]
    items = folder_items(str(tmp_path / "videos"), str(tmp_path / "labels"))
    assert [item.video for item in items] == [str(clip)]


def test_public_data_set_readers_find_an_m4v_clip(tmp_path):
    videos = tmp_path / "videos"
    didemo = fx.write_json(tmp_path / "didemo.json", [{"video": "d1.mov", "description": "a"}])
    touch(videos / "d1.m4v")
    assert read_didemo(str(didemo), str(videos))[0].video == str(videos / "d1.m4v")
    activitynet = fx.write_json(tmp_path / "anet.json", {"v_a1": {"sentences": ["a"]}})
    touch(videos / "v_a1.m4v")
    assert read_activitynet(str(activitynet), str(videos))[0].video == str(videos / "v_a1.m4v")
    kinetics = fx.write_csv(tmp_path / "k400.csv", ["label", "youtube_id", "time_start", "time_end", "split"],
                            [["cat", "k1", 0, 10, "val"]])
    touch(videos / "val" / "k1_000000_000010.m4v")
    assert read_kinetics(str(kinetics), str(videos))[0].video == str(videos / "val/k1_000000_000010.m4v")
    labels = fx.write_json(tmp_path / "labels.json", {"Dropping something": "0"})
    ssv2 = fx.write_json(tmp_path / "ssv2.json", [{"id": "7", "template": "Dropping [something]"}])
    touch(videos / "7.m4v")
    assert read_ssv2(str(ssv2), str(labels), str(videos))[0].video == str(videos / "7.m4v")
    touch(videos / "7.webm")  # SSv2's own extension first
    assert read_ssv2(str(ssv2), str(labels), str(videos))[0].video == str(videos / "7.webm")


def test_a_tar_shard_sample_with_an_m4v_member_is_a_video(tmp_path):
    mp4 = tmp_path / "clip.mp4"
    write_mp4(str(mp4), np.stack([np.full((16, 16, 3), 30 * t, np.uint8) for t in range(4)]), fps=4)
    m4v = tmp_path / "clip.m4v"
    os.rename(mp4, m4v)
    (shard,) = write_shards([("k0", str(m4v), "a clip")], str(tmp_path / "shard-%d.tar"))
    (sample,) = ShardedVideoTextDataset(shard, ClipOptions(num_frames=2, image_size=16), on_bad_video="raise")
    assert sample["video"].shape == (2, 3, 16, 16) and sample["captions"] == ["a clip"]
