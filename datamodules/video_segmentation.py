"""Video object segmentation benchmarks (DAVIS-2017, MOSE, YouTube-VIS 2019 / 2021) for scoring the segmenter's
trajectories with VEQ and STQ_EN (``trajtok.segmentation.video_quality``), under the official TrajTok drivers'
protocol.

Each video becomes one sample:

- ``video``: float32 ``(T, 3, S, S)``: T frames (8) at ``np.linspace(0, n - 1, T).round()`` of the video's n
  frames (a video shorter than T: all its frames, then its last frame repeated), each squashed to S x S (224)
  with PIL's bicubic resize, scaled to [0, 1] and normalised with the ImageNet mean / std.
- ``vos_mask``: long ``(T, H, W)``: the instance ids of those frames at the annotation's own resolution; 0 is
  background, 255 (DAVIS / MOSE) unlabelled (the metric makes it background).
- ``index``: the video's position in the benchmark's list; ``video_name``: its folder name.

Batches (``collate_video_segmentation``) stack ``video`` to ``(B, T, 3, S, S)`` and keep ``vos_mask`` as a list
of B volumes, since resolutions differ between videos (DAVIS 480p varies in width); ``trajtok test`` scores them
(``TrajTokModule`` updates ``VideoSegmentationQuality`` for batches with ``vos_mask``).

Formats:

- **Palette folders** (DAVIS-2017, MOSE): ``<frames>/<video>/*.jpg`` and ``<masks>/<video>/*.png`` with the same
  stems, each PNG a palette (or greyscale) image whose pixel value is the instance id. The videos are the lines
  of a list file (DAVIS ``ImageSets/2017/val.txt``) or every sub-folder of ``<frames>``, sorted (MOSE).
- **YouTube-VIS** (2019, 2021): a COCO-style JSON of ``videos`` (``id``, ``file_names`` relative to
  ``<frames>``) and ``annotations`` (``video_id``, ``segmentations``: one COCO RLE or null per frame). A frame's
  id map paints the video's annotations in file order, annotation i as id i + 1, later ones over earlier ones.
  RLEs are decoded in numpy (``datamodules.coco_rle``); polygons need pycocotools.

Where this differs from the official drivers, and why: they skip (with a printed line) a video that fails to
load; here a missing folder, frame or annotation, an unreadable or multi-channel PNG, masks of another size than
their frames, or a frame count that disagrees with the annotations raises an error naming the file, since a
silently dropped video changes the average. Two exceptions follow the drivers, because the public releases need
them: MOSE's ``valid`` split annotates only some frames, and its driver reads a missing PNG as all background
(``missing_masks: background``, which ``configs/benchmarks/mose.yaml`` sets); and YouTube-VIS videos without any
annotation are left out (counted in ``skipped_videos``), as its driver does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from jsonargparse.typing import PositiveInt
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from datamodules.base import DataModule
from datamodules.coco_rle import decode_segmentation
from datamodules.options import LoaderOptions
from datamodules.rows import read_json
from datamodules.transforms import IMAGENET_MEAN, IMAGENET_STD

Benchmark = Literal["davis2017", "mose", "ytvis2019", "ytvis2021"]
MissingMasks = Literal["raise", "background"]
#: The largest instance id a YouTube-VIS frame may get: 255 is the void value the metric makes background.
MAX_INSTANCES = 254


@dataclass(frozen=True)
class SegmentationLayout:
    """Where a benchmark's files are, relative to its root (see the module docstring for the formats).

    Attributes:
        format: ``"palette"`` (JPEG + palette PNG folders) or ``"ytvis"`` (COCO-style JSON).
        frames: the folder of per-video frame folders (palette), or the folder ``file_names`` are relative to.
        masks: palette: the folder of per-video PNG folders.
        videos: palette: a file listing the videos, one per line; None: every sub-folder of ``frames``, sorted.
        annotations: ytvis: the JSON file.
    """

    format: Literal["palette", "ytvis"]
    frames: str
    masks: str | None = None
    videos: str | None = None
    annotations: str | None = None


#: The standard release layouts, as the official drivers read them.
LAYOUTS: dict[str, SegmentationLayout] = {
    "davis2017": SegmentationLayout("palette", "JPEGImages/480p", "Annotations/480p", "ImageSets/2017/val.txt"),
    "mose": SegmentationLayout("palette", "valid/JPEGImages", "valid/Annotations"),
    "ytvis2019": SegmentationLayout("ytvis", "valid/JPEGImages", annotations="valid.json"),
    "ytvis2021": SegmentationLayout("ytvis", "valid/JPEGImages", annotations="valid.json"),
}


def sample_frame_indices(num_available: int, num_frames: int) -> np.ndarray:
    """The official drivers' frames: ``linspace(0, n - 1, T)`` rounded (half to even, numpy's rounding), or, for a
    video of fewer than T frames, all of them and then the last one repeated."""
    if num_available < 1:
        raise ValueError("a video needs at least one frame")
    if num_available >= num_frames:
        return np.linspace(0, num_available - 1, num_frames).round().astype(np.int64)
    return np.concatenate([np.arange(num_available), np.full(num_frames - num_available, num_available - 1)])


def read_frame(path: str) -> np.ndarray:
    """A ``(H, W, 3)`` uint8 RGB frame."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"frame not found: {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as e:
        raise ValueError(f"{path}: not a readable image: {e}") from e


def model_input(frame: np.ndarray, image_size: int) -> np.ndarray:
    """A frame as the segmenter reads it: squashed to ``image_size`` square (PIL bicubic), in [0, 1], ImageNet
    normalised, ``(3, S, S)`` float32, computed in float32 as the official drivers do."""
    resized = Image.fromarray(frame).resize((image_size, image_size), Image.Resampling.BICUBIC)
    pixels = np.asarray(resized, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return pixels.transpose(2, 0, 1)


def read_palette_mask(path: str) -> np.ndarray:
    """The ``(H, W)`` instance ids of a palette (or greyscale) PNG: its pixel values, not the colours."""
    try:
        with Image.open(path) as image:
            mask = np.asarray(image)
    except OSError as e:
        raise ValueError(f"{path}: not a readable PNG: {e}") from e
    if mask.ndim != 2:
        raise ValueError(f"{path}: expected a palette or greyscale PNG of instance ids, got a {mask.shape[-1]}-channel "
                         "image")
    return mask.astype(np.int64)


class SegmentedVideo:
    """One benchmark video: its frames in order and, per frame, its instance-id mask."""

    name: str
    frames: tuple[str, ...]

    def mask(self, frame: int, height: int, width: int) -> np.ndarray:
        """The ``(height, width)`` instance ids of frame ``frame`` (an index into ``frames``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class PaletteVideo(SegmentedVideo):
    """A video of a palette-folder benchmark; ``masks[i]`` is frame i's PNG, None where it has none (read as
    background)."""

    name: str
    frames: tuple[str, ...]
    masks: tuple[str | None, ...]

    def mask(self, frame: int, height: int, width: int) -> np.ndarray:
        path = self.masks[frame]
        if path is None:
            return np.zeros((height, width), dtype=np.int64)
        mask = read_palette_mask(path)
        if mask.shape != (height, width):
            raise ValueError(f"{path}: mask is {mask.shape[0]}x{mask.shape[1]}, its frame {self.frames[frame]} "
                             f"{height}x{width}")
        return mask


@dataclass(frozen=True)
class YTVISVideo(SegmentedVideo):
    """A YouTube-VIS video; ``instances[i][t]`` is annotation i's segmentation in frame t (None: absent)."""

    name: str
    frames: tuple[str, ...]
    instances: tuple[tuple[Any, ...], ...]
    origin: str

    def mask(self, frame: int, height: int, width: int) -> np.ndarray:
        ids = np.zeros((height, width), dtype=np.int64)
        for i, segmentations in enumerate(self.instances):
            try:
                present = decode_segmentation(segmentations[frame], height, width)
            except ValueError as e:
                raise ValueError(f"{self.origin}, annotation {i} of video {self.name!r}, frame {frame} "
                                 f"({self.frames[frame]}): {e}") from e
            ids[present] = i + 1
        return ids


def _folder(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _video_names(layout: SegmentationLayout, root: str) -> list[str]:
    frames = _folder(os.path.join(root, layout.frames), "frame folder")
    if layout.videos is None:
        names = sorted(d for d in os.listdir(frames) if os.path.isdir(os.path.join(frames, d)))
        if not names:
            raise ValueError(f"{frames}: no video folders")
        return names
    path = os.path.join(root, layout.videos)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video list not found: {path}")
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f"{path}: no video names")
    return names


def read_palette_videos(layout: SegmentationLayout, root: str, missing_masks: MissingMasks = "raise") -> list[PaletteVideo]:
    """The videos of a palette-folder benchmark, every frame's mask located now, so that a missing one fails
    before any model runs (``missing_masks: background`` reads it as background instead, as the MOSE driver)."""
    frames_root = os.path.join(root, layout.frames)
    masks_root = _folder(os.path.join(root, layout.masks or ""), "annotation folder")
    videos = []
    for name in _video_names(layout, root):
        frame_dir = _folder(os.path.join(frames_root, name), f"frame folder of video {name!r}")
        frames = sorted(f for f in os.listdir(frame_dir) if f.endswith(".jpg"))
        if not frames:
            raise ValueError(f"{frame_dir}: no .jpg frames")
        mask_dir = os.path.join(masks_root, name)
        if not os.path.isdir(mask_dir) and missing_masks == "raise":
            raise FileNotFoundError(f"annotation folder of video {name!r} not found: {mask_dir}")
        masks = [os.path.join(mask_dir, os.path.splitext(f)[0] + ".png") for f in frames]
        missing = [m for m in masks if not os.path.isfile(m)]
        if missing and missing_masks == "raise":
            raise FileNotFoundError(
                f"{len(missing)} of the {len(frames)} frames of video {name!r} have no mask, e.g. {missing[0]} "
                "(missing_masks: background reads them as background, as the official MOSE driver does)")
        videos.append(PaletteVideo(
            name=name,
            frames=tuple(os.path.join(frame_dir, f) for f in frames),
            masks=tuple(m if os.path.isfile(m) else None for m in masks),
        ))
    return videos


def _ytvis_list(data: dict, key: str, path: str) -> list[dict]:
    rows = data.get(key)
    if not isinstance(rows, list):
        hint = (" (the public valid / test splits of YouTube-VIS ship without masks: point annotations at a "
                "labelled file)") if key == "annotations" else ""
        raise ValueError(f"{path}: expected a list {key!r}{hint}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}, {key}[{i}]: expected an object, got {type(row).__name__}")
    return rows


def read_ytvis_videos(layout: SegmentationLayout, root: str) -> tuple[list[YTVISVideo], list[str]]:
    """The annotated videos of a YouTube-VIS JSON, and the names of those left out for having no annotation."""
    path = os.path.join(root, layout.annotations or "")
    frames_root = _folder(os.path.join(root, layout.frames), "frame folder")
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with 'videos' and 'annotations'")
    videos, annotations = _ytvis_list(data, "videos", path), _ytvis_list(data, "annotations", path)
    by_video: dict[Any, list[tuple[int, dict]]] = {}
    for j, annotation in enumerate(annotations):
        by_video.setdefault(annotation.get("video_id"), []).append((j, annotation))
    out, skipped = [], []
    for i, video in enumerate(videos):
        names = video.get("file_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"{path}, videos[{i}]: 'file_names' must be a non-empty list of frame paths")
        name = names[0].split("/")[0]
        own = by_video.get(video.get("id"), [])
        if not own:
            skipped.append(name)
            continue
        if len(own) > MAX_INSTANCES:
            raise ValueError(f"{path}, videos[{i}]: {len(own)} annotations; at most {MAX_INSTANCES} fit below the "
                             "void id 255")
        instances = []
        for j, annotation in own:
            segmentations = annotation.get("segmentations")
            if not isinstance(segmentations, list) or len(segmentations) != len(names):
                count = len(segmentations) if isinstance(segmentations, list) else "no"
                raise ValueError(f"{path}, annotations[{j}]: {count} segmentations for the {len(names)} frames of "
                                 f"video {name!r}")
            instances.append(tuple(segmentations))
        out.append(YTVISVideo(name=name, frames=tuple(os.path.join(frames_root, n) for n in names),
                              instances=tuple(instances), origin=path))
    if not out:
        raise ValueError(f"{path}: no video has annotations")
    return out, skipped


class VideoSegmentationDataset(Dataset):
    """The samples of the module docstring, one per video.

    Args:
        videos: the benchmark's videos (``read_palette_videos`` / ``read_ytvis_videos``).
        num_frames: T, frames per video.
        image_size: S, the model input's side.
    """

    def __init__(self, videos: list[SegmentedVideo], num_frames: int = 8, image_size: int = 224) -> None:
        self.videos = videos
        self.num_frames = num_frames
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict[str, Any]:
        video = self.videos[index]
        chosen = sample_frame_indices(len(video.frames), self.num_frames)
        pixels, masks = {}, {}
        for i in dict.fromkeys(chosen.tolist()):  # a padded video repeats its last frame: read it once
            frame = read_frame(video.frames[i])
            pixels[i] = model_input(frame, self.image_size)
            masks[i] = video.mask(i, *frame.shape[:2])
        shapes = {masks[i].shape for i in masks}
        if len(shapes) > 1:
            raise ValueError(f"the frames of video {video.name!r} differ in size: {sorted(shapes)}")
        return {
            "video": torch.from_numpy(np.stack([pixels[i] for i in chosen.tolist()])),
            "vos_mask": torch.from_numpy(np.stack([masks[i] for i in chosen.tolist()])),
            "index": index,
            "video_name": video.name,
        }


def collate_video_segmentation(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``video`` stacked, ``vos_mask`` a list (each video at its own resolution), ``index``, ``video_name``."""
    return {
        "video": torch.stack([s["video"] for s in samples]),
        "vos_mask": [s["vos_mask"] for s in samples],
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "video_name": [s["video_name"] for s in samples],
    }


class VideoSegmentationDataModule(DataModule):
    """A video segmentation benchmark for evaluation (``trajtok test`` / ``validate`` / ``predict`` all read its
    one split): DAVIS-2017 val, MOSE valid, YouTube-VIS 2019 / 2021. Paths are relative to ``root`` (absolute
    ones are taken as they are); None keeps the benchmark's standard layout (``LAYOUTS``).

    Args:
        benchmark: ``davis2017``, ``mose``, ``ytvis2019`` or ``ytvis2021``.
        root: the folder the benchmark was downloaded to.
        frames_dir: the frame folder (palette: of per-video folders; YouTube-VIS: what ``file_names`` are
            relative to).
        masks_dir: palette benchmarks: the folder of per-video PNG folders.
        video_list: palette benchmarks: a file naming the videos, one per line ("" : every sub-folder of
            ``frames_dir``).
        annotations: YouTube-VIS: the JSON file.
        num_frames: frames per video (the official protocol: 8).
        image_size: the model input's side (the official protocol: 224).
        missing_masks: a palette frame without its PNG: ``raise`` (default), or ``background`` (the MOSE driver's
            reading, for splits that annotate only some frames).
        loader: batch size (default 1, the drivers' one video at a time; larger batches work, each video keeping
            its own mask resolution) and workers.
    """

    def __init__(
        self,
        benchmark: Benchmark,
        root: str,
        frames_dir: str | None = None,
        masks_dir: str | None = None,
        video_list: str | None = None,
        annotations: str | None = None,
        num_frames: PositiveInt = 8,
        image_size: PositiveInt = 224,
        missing_masks: MissingMasks = "raise",
        loader: LoaderOptions = LoaderOptions(batch_size=1),
    ) -> None:
        super().__init__()
        if benchmark not in LAYOUTS:
            raise ValueError(f"benchmark must be one of {sorted(LAYOUTS)}, got {benchmark!r}")
        self.save_hyperparameters()
        standard = LAYOUTS[benchmark]
        self.benchmark = benchmark
        self.root = str(root)
        self.layout = SegmentationLayout(
            format=standard.format,
            frames=frames_dir if frames_dir is not None else standard.frames,
            masks=masks_dir if masks_dir is not None else standard.masks,
            videos=(video_list or None) if video_list is not None else standard.videos,
            annotations=annotations if annotations is not None else standard.annotations,
        )
        self.num_frames = num_frames
        self.image_size = image_size
        self.missing_masks = missing_masks
        self.loader = loader
        self.dataset: VideoSegmentationDataset | None = None
        self.skipped_videos: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        if stage == "fit":
            raise ValueError(f"{self.benchmark} is an evaluation benchmark: run trajtok test (or validate, predict)")
        if self.dataset is not None:
            return
        if self.layout.format == "palette":
            videos = read_palette_videos(self.layout, self.root, self.missing_masks)
        else:
            videos, self.skipped_videos = read_ytvis_videos(self.layout, self.root)
        self.dataset = VideoSegmentationDataset(videos, self.num_frames, self.image_size)

    def _loader(self) -> DataLoader:
        self.setup("test")
        workers = self.loader.num_workers
        return DataLoader(self.dataset, batch_size=self.loader.batch_size_for(train=False), shuffle=False,
                          num_workers=workers, persistent_workers=False, collate_fn=collate_video_segmentation)

    def train_dataloader(self) -> DataLoader:
        raise ValueError(f"{self.benchmark} is an evaluation benchmark: run trajtok test (or validate, predict)")

    def val_dataloader(self) -> DataLoader:
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        return self._loader()
