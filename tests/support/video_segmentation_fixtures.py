"""Tiny copies of the video segmentation benchmarks in their release layouts (``configs/benchmarks/davis2017.yaml``,
``mose.yaml``, ``ytvis2019.yaml``), written with Pillow: small JPEG frames and palette PNG masks (or a YouTube-VIS
JSON of COCO RLEs) whose content the tests know. Each writer returns the root folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 24, 32
#: DAVIS videos: name -> frame count. "short" has fewer frames than the protocol's 8.
DAVIS_VIDEOS = {"bear": 10, "short": 5}


def instance_ids(frame: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """The ids of frame ``frame``: object 1 a box moving right, object 2 a fixed box, a void (255) border row."""
    ids = np.zeros((height, width), dtype=np.uint8)
    ids[4:12, 2 + frame:10 + frame] = 1
    ids[14:22, 20:28] = 2
    ids[0] = 255
    return ids


def write_frame(path: Path, ids: np.ndarray) -> None:
    """A JPEG whose colour follows the ids (so a model sees the objects)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colours = np.array([[30, 30, 30], [220, 40, 40], [40, 40, 220]], dtype=np.uint8)
    Image.fromarray(colours[np.minimum(ids, 2)]).save(path, quality=95)


def write_palette_png(path: Path, ids: np.ndarray) -> None:
    """A palette ("P") PNG whose pixel values are ``ids``, with DAVIS-like colours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192]
    image.putpalette(palette)
    image.save(path)


def palette_videos(frames_dir: Path, masks_dir: Path, videos: dict[str, int]) -> None:
    for name, count in videos.items():
        for t in range(count):
            ids = instance_ids(t)
            write_frame(frames_dir / name / f"{t:05d}.jpg", ids)
            write_palette_png(masks_dir / name / f"{t:05d}.png", ids)


def davis(root: Path) -> Path:
    """``ImageSets/2017/val.txt``, ``JPEGImages/480p``, ``Annotations/480p`` with ``DAVIS_VIDEOS``."""
    palette_videos(root / "JPEGImages/480p", root / "Annotations/480p", DAVIS_VIDEOS)
    (root / "ImageSets/2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/2017/val.txt").write_text("".join(f"{name}\n" for name in DAVIS_VIDEOS))
    return root


def mose(root: Path) -> Path:
    """``valid/JPEGImages`` and ``valid/Annotations``, only the first frame of each video annotated (as released)."""
    palette_videos(root / "valid/JPEGImages", root / "valid/Annotations", {"a1": 9, "b2": 3})
    for png in (root / "valid/Annotations").rglob("*.png"):
        if png.stem != "00000":
            png.unlink()
    return root


def encode_rle(mask: np.ndarray) -> str:
    """A compressed COCO RLE string of a bool mask: pycocotools' ``rleToString``, written out here for the tests
    (each count minus the one two places before from the fourth on, 5-bit groups, 0x20 = more, 0x10 = sign)."""
    counts = uncompressed_counts(mask)
    text = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            text.append(chr(c + (0x20 if more else 0) + 48))
    return "".join(text)


def ytvis(root: Path) -> Path:
    """``valid.json`` (two annotated videos, one without annotations) and ``valid/JPEGImages``; the first
    object's masks compressed RLE strings, the second's uncompressed count lists, absent (null) in frame 0."""
    videos, annotations = [], []
    for vid, (name, count) in enumerate({"v1": 6, "v2": 10, "empty": 3}.items(), start=1):
        names = [f"{name}/{t:05d}.jpg" for t in range(count)]
        for t, file_name in enumerate(names):
            write_frame(root / "valid/JPEGImages" / file_name, instance_ids(t))
        videos.append({"id": vid, "file_names": names, "height": HEIGHT, "width": WIDTH, "length": count})
        if name == "empty":
            continue
        first = [{"size": [HEIGHT, WIDTH], "counts": encode_rle(instance_ids(t) == 1)} for t in range(count)]
        second = [None] + [{"size": [HEIGHT, WIDTH], "counts": uncompressed_counts(instance_ids(t) == 2)}
                           for t in range(1, count)]
        annotations += [{"id": 2 * vid, "video_id": vid, "category_id": 1, "segmentations": first},
                        {"id": 2 * vid + 1, "video_id": vid, "category_id": 2, "segmentations": second}]
    (root / "valid.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "valid.json").write_text(json.dumps({"videos": videos, "annotations": annotations}))
    return root


def uncompressed_counts(mask: np.ndarray) -> list[int]:
    """The run lengths of a bool mask in column-major order, starting with a (possibly empty) run of zeros."""
    flat = mask.T.flatten()
    counts, value, run = [], False, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return counts


LAYOUTS = {"davis2017": davis, "mose": mose, "ytvis2019": ytvis}
