"""Tiny copies of public benchmarks, in their official annotation formats and at the folder layouts the presets in
``configs/benchmarks/`` expect, with real 8-frame 64 px clips written by PyAV. Each writer returns the root folder
(what a user points ``--data.init_args.root`` at); the content is small and fixed so tests can compute ranks and
class indices by hand."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
from video_segmentation_fixtures import LAYOUTS as VIDEO_SEGMENTATION

from datamodules.synthetic import write_mp4

FRAMES, SIZE = 8, 64


def write_clip(path: Path, brightness: int, codec: str | None = None) -> Path:
    """An 8-frame 64x64 clip of one grey level (H.264 mp4, or VP8 webm with ``codec="libvpx"``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(str(path), np.full((FRAMES, SIZE, SIZE, 3), brightness, np.uint8), fps=8, codec=codec)
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsfusion(path: Path, captions: dict[str, str]) -> Path:
    """``MSRVTT_JSFUSION_test.csv``: one row per clip (key, vid_key, video_id, sentence)."""
    rows = [[f"ret{i}", f"msr{video_id.removeprefix('video')}", video_id, sentence]
            for i, (video_id, sentence) in enumerate(captions.items())]
    return write_csv(path, ["key", "vid_key", "video_id", "sentence"], rows)


# Five MSR-VTT clips: official split, captions. video3 is the one 1k-A test clip here.
MSRVTT = {
    "video0": ("train", ["a man talks", "someone speaks"]),
    "video1": ("validate", ["a dog runs"]),
    "video2": ("test", ["cars race", "a race on a track"]),
    "video3": ("test", ["a girl sings"]),
    "video4": ("train", ["people dance"]),
}
MSRVTT_1KA = {"video3": "a girl sings on stage", "video4": "people dance at a party"}


def msrvtt(root: Path) -> Path:
    for i, video_id in enumerate(MSRVTT):
        write_clip(root / "videos/all" / f"{video_id}.mp4", 40 + 40 * i)
    videos = [{"category": 0, "url": "", "video_id": v, "start time": 0.0, "end time": 1.0, "split": s, "id": i}
              for i, (v, (s, _)) in enumerate(MSRVTT.items())]
    sentences = [{"caption": c, "video_id": v, "sen_id": 0} for v, (_, caps) in MSRVTT.items() for c in caps]
    for n, sentence in enumerate(sentences):
        sentence["sen_id"] = n
    write_json(root / "msrvtt_data/MSRVTT_data.json", {"info": {}, "videos": videos, "sentences": sentences})
    write_jsfusion(root / "msrvtt_data/MSRVTT_JSFUSION_test.csv", MSRVTT_1KA)
    return root


# DiDeMo rows: (video, description); videos' rows interleave, as in the official files.
DIDEMO = [
    ("x@N01_1_a.mov", "the dog jumps"),
    ("y@N02_2_b.mp4", "a car turns"),
    ("x@N01_1_a.mov", "  the dog lands "),
    ("z@N03_3_c.avi", "birds fly"),
    ("y@N02_2_b.mp4", "it stops"),
]
# The paragraphs those rows give, in first-appearance order of their videos.
DIDEMO_PARAGRAPHS = {"x@N01_1_a": "the dog jumps the dog lands", "y@N02_2_b": "a car turns it stops",
                     "z@N03_3_c": "birds fly"}


def didemo(root: Path) -> Path:
    rows = [{"video": v, "description": d, "times": [[0, 1], [0, 1], [1, 1], [0, 0]], "annotation_id": n,
             "num_segments": 6, "train_times": [], "dl_link": ""} for n, (v, d) in enumerate(DIDEMO)]
    for split in ("train", "val", "test"):
        write_json(root / f"{split}_data.json", rows)
    # Copies are usually transcoded to mp4: the .mov and .avi clips are here as .mp4, the .mp4 one as named.
    for i, stem in enumerate(DIDEMO_PARAGRAPHS):
        write_clip(root / "videos" / f"{stem}.mp4", 60 + 50 * i)
    return root


ACTIVITYNET = {
    "v_aaa": [" A man walks in.", " He sits down. "],
    "v_bbb": ["Kids play ball."],
    "v_ccc": ["A cook cuts onions.", "She fries them.", "   "],
}
ACTIVITYNET_PARAGRAPHS = {"v_aaa": "A man walks in. He sits down.", "v_bbb": "Kids play ball.",
                          "v_ccc": "A cook cuts onions. She fries them."}


def activitynet(root: Path) -> Path:
    data = {key: {"duration": 20.0, "timestamps": [[0.0, 10.0]] * len(s), "sentences": s}
            for key, s in ACTIVITYNET.items()}
    for name in ("train", "val_1"):
        write_json(root / f"captions/{name}.json", data)
    for i, key in enumerate(ACTIVITYNET):
        write_clip(root / "videos" / f"{key}.mp4", 60 + 50 * i)
    return root


VATEX = {
    "abcdefghijk_000010_000020": ["a dog runs", "a dog sits"],
    "bcdefghijkl_000000_000010": ["a man cooks", "food in a pan"],
    "cdefghijklm_000005_000015": ["two kids swim", "a pool"],
}


def vatex(root: Path) -> Path:
    rows = [{"videoID": v, "enCap": caps, "chCap": ["一只狗"] * len(caps)} for v, caps in VATEX.items()]
    for name in ("vatex_training_v1.0.json", "vatex_validation_v1.0.json"):
        write_json(root / name, rows)
    for i, video_id in enumerate(VATEX):
        write_clip(root / "videos" / f"{video_id}.mp4", 60 + 50 * i)
    return root


# Kinetics rows: label, youtube_id, time_start, time_end, split.
KINETICS = [
    ["abseiling", "aaaaaaaaaaa", 10, 20, "val"],
    ["air drumming", "bbbbbbbbbbb", 0, 10, "val"],
    ["abseiling", "ccccccccccc", 5, 15, "val"],
    ["zumba", "ddddddddddd", 120, 130, "val"],
]
KINETICS_CLASSES = ["abseiling", "air drumming", "zumba"]


def kinetics(root: Path) -> Path:
    header = ["label", "youtube_id", "time_start", "time_end", "split"]
    write_csv(root / "annotations/val.csv", header, KINETICS)
    write_csv(root / "annotations/train.csv", header, [[*row[:4], "train"] for row in KINETICS])
    for split in ("train", "val"):  # the CVDF layout: <split>/<youtube_id>_<start>_<end>.mp4
        for i, (_, youtube_id, start, end, _) in enumerate(KINETICS):
            write_clip(root / split / f"{youtube_id}_{start:06d}_{end:06d}.mp4", 40 + 50 * i)
    return root


SSV2_LABELS = {"Putting something on something": "2", "Pushing something from left to right": "0",
               "Spinning something that quickly stops spinning": "1"}
SSV2_CLASSES = ["Pushing something from left to right", "Spinning something that quickly stops spinning",
                "Putting something on something"]
# Rows: id, template; their class indices: 1, 2, 0.
SSV2 = [("74225", "Spinning [something] that quickly stops spinning"),
        ("3", "Putting [something] on [something]"),
        ("118", "Pushing [something] from left to right")]


def ssv2(root: Path) -> Path:
    rows = [{"id": i, "label": t.replace("[", "").replace("]", "").lower(), "template": t, "placeholders": ["cup"]}
            for i, t in SSV2]
    for name in ("train", "validation"):
        write_json(root / f"labels/something-something-v2-{name}.json", rows)
    write_json(root / "labels/something-something-v2-labels.json", SSV2_LABELS)
    for n, (video_id, _) in enumerate(SSV2):
        write_clip(root / "20bn-something-something-v2" / f"{video_id}.webm", 60 + 50 * n, codec="libvpx")
    return root


# Each preset of configs/benchmarks/ and the writer of a folder laid out as it expects.
LAYOUTS = {"msrvtt_1ka": msrvtt, "msrvtt_9k": msrvtt, "didemo": didemo, "activitynet": activitynet, "vatex": vatex,
           "k400": kinetics, "ssv2": ssv2}


def layout(name: str, root: Path) -> Path:
    """The tiny copy of benchmark preset ``name`` in ``root`` (created)."""
    os.makedirs(root, exist_ok=True)
    return LAYOUTS[name](root)

# The video-segmentation presets (configs/benchmarks/davis2017.yaml, ...) and their tiny folders.
LAYOUTS.update(VIDEO_SEGMENTATION)
