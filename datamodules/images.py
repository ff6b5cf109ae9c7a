"""Image-text data as one-frame clips: batches of ``video (B, 1, 3, S, S)``, ``text``, ``captions``, ``index``.

TrajViT2 is trained on images and videos together (the paper: 4M videos and 15M images); an image is a clip
of one frame, tokenised by the same tokenizer. Images are decoded with Pillow (EXIF orientation applied,
any mode converted to RGB) and go through the same crop / resize / normalise transforms as video frames.

Sources, per split:

- an annotation file (JSONL / JSON / CSV) of rows ``{"image": "imgs/x.jpg", "caption": "..." or [...]}``,
  paths relative to ``root`` (default: the file's folder); key names are options;
- a folder of images (``IMAGE_EXTENSIONS``, at any depth), each with a ``.txt`` file of the same stem
  beside it holding its caption (the layout img2dataset writes as "files");
- WebDataset-style tar shards of ``<key>.jpg`` (or ``.png`` ...) with ``<key>.txt`` and/or ``<key>.json``
  captions, read exactly as video shards are (``datamodules.shards``; ``write_shards`` writes them from
  ``(key, image path, captions)`` tuples): ``ShardedImageTextDataset``, ``ImageShardDataModule``;
- nothing: the embedded synthetic set's frames (the middle frame of every clip, with the clip's captions),
  written once as PNG files + JSONL annotations beside the synthetic videos and read like real data.

A corrupt, truncated or missing image is skipped and reported in the batch's ``skipped``, as unusable videos
are (``on_bad_image: skip``), or raises naming the file and annotation row (``raise``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from PIL import Image, ImageOps

from datamodules.annotations import (
    ImageTextRecord,
    read_image_text_annotations,
    read_video_text_annotations,
)
from datamodules.bad_samples import OnBadSample, RecordDataset
from datamodules.base import ClipDataModule
from datamodules.collate import collate_video_text
from datamodules.options import (
    AnnotationKeys,
    ClipOptions,
    FrameOptions,
    LoaderOptions,
    SyntheticOptions,
)
from datamodules.shards import ShardDataModule, ShardedVideoTextDataset, Shards
from datamodules.synthetic import (
    SPLITS,
    SyntheticConfig,
    default_cache_dir,
    ensure_synthetic,
)
from datamodules.transforms import eval_clip_transform, train_clip_transform
from datamodules.video import BadSampleError, DecodedClip, decode_clip
from trajtok.files import ensure_folder

# Image files of caption folders and image members of shards, lower case, without the dot.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")


class ImageDecodeError(BadSampleError):
    """An image file that is missing, truncated, or not an image Pillow can read."""


def decode_image(source: str | bytes, name: str | None = None) -> torch.Tensor:
    """uint8 ``(1, H, W, 3)`` RGB of an image file or its encoded bytes (a one-frame clip, as
    ``decode_clip`` returns frames); ``ImageDecodeError`` naming ``name`` (default: the path) otherwise."""
    label = name or (source if isinstance(source, str) else "<image bytes>")
    try:
        with Image.open(source if isinstance(source, str) else io.BytesIO(source)) as image:
            # Pillow decodes lazily: the conversion is where a truncated or corrupt file fails.
            rgb = ImageOps.exif_transpose(image).convert("RGB")
            frame = np.array(rgb)
    except FileNotFoundError as e:
        raise ImageDecodeError(label, "image not found") from e
    # UnidentifiedImageError is an OSError; some plug-ins raise SyntaxError / ValueError for broken headers.
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(label, f"not a readable image: {e}") from e
    return torch.from_numpy(frame)[None]


def read_image_folder(path: str) -> list[ImageTextRecord]:
    """Every image (``IMAGE_EXTENSIONS``, at any depth, hidden entries left out) under ``path`` with the
    caption in the ``.txt`` file of the same stem beside it; sorted, so the order is the same everywhere.
    An image without a caption file, or with a blank or non-UTF-8 one, is a ValueError naming it (a
    silently dropped image would shift indices)."""
    records = []
    for folder, subfolders, files in os.walk(path):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for file in sorted(files):
            stem, ext = os.path.splitext(file)
            if file.startswith(".") or ext.lower().lstrip(".") not in IMAGE_EXTENSIONS:
                continue
            image, caption_file = os.path.join(folder, file), os.path.join(folder, stem + ".txt")
            try:
                with open(caption_file, encoding="utf-8") as f:
                    caption = f.read().strip()
            except FileNotFoundError:
                raise ValueError(f"{image}: no caption file {caption_file}") from None
            except UnicodeDecodeError as e:
                raise ValueError(f"{caption_file}: not valid UTF-8: {e}") from e
            if not caption:
                raise ValueError(f"{caption_file}: blank caption")
            records.append(ImageTextRecord(image, (caption,), origin=caption_file))
    if not records:
        raise ValueError(f"{path}: no images ({', '.join('.' + e for e in IMAGE_EXTENSIONS)}) with captions")
    return records


def read_image_text(path: str, root: str | None = None,
                    keys: AnnotationKeys = AnnotationKeys()) -> list[ImageTextRecord]:
    """Captioned images from an annotation file (``read_image_text_annotations``) or a folder of images with
    ``.txt`` captions (``read_image_folder``; ``root`` and the keys do not apply)."""
    if os.path.isdir(path):
        return read_image_folder(path)
    return read_image_text_annotations(path, root, keys)


class ImageTextDataset(RecordDataset):
    """Captioned images as one-frame clips: ``video`` float ``(1, 3, S, S)``, ``text`` (a random caption in
    training, the first otherwise), ``captions``, ``index``; collate with ``collate_video_text``.

    ``clip`` (``datamodules.options.FrameOptions``, as ``ImageTextDataModule`` takes it) says how an image becomes
    the model's input. Unusable images are skipped (left out of their batch, and reported in its ``skipped``) or
    raised, as ``RecordDataset`` says (``on_bad_image``, ``num_skipped``, ``skipped_paths``).
    """

    records: list[ImageTextRecord]

    def __init__(
        self,
        records: Sequence[ImageTextRecord],
        clip: FrameOptions = FrameOptions(),
        train: bool = False,
        on_bad_image: OnBadSample = "skip",
        max_reported: NonNegativeInt = 10,
    ) -> None:
        super().__init__(records, on_bad_image, max_reported)
        self.clip = clip
        self.train = train

    def record_files(self, index: int) -> list[str]:
        image = self.records[index].image
        return [str(image)] if isinstance(image, (str, os.PathLike)) and "://" not in str(image) else []

    def load(self, index: int) -> dict[str, Any]:
        """One sample, or an ``ImageDecodeError`` naming the file that prevents it."""
        rec = self.records[index]
        frames = decode_image(rec.image)
        if self.train:
            clip = self.clip
            video, _ = train_clip_transform(frames, clip.image_size, clip.crop_scale, clip.horizontal_flip)
        else:
            video, _ = eval_clip_transform(frames, self.clip.image_size)
        # Drawn after the crop, as VideoTextDataset does.
        text = rec.captions[int(torch.randint(len(rec.captions), (1,)))] if self.train else rec.captions[0]
        return {"video": video, "text": text, "captions": list(rec.captions), "index": index}


# ------------------------------------------------------------------------------------------ synthetic frames


def write_synthetic_frames(out_dir: str, source: str) -> None:
    """The middle frame of every clip of the synthetic set in ``source`` as ``images/<key>.png`` (lossless:
    the pixels the video pipeline decodes), with ``<split>.jsonl`` rows of its image and the clip's captions,
    then ``meta.json``."""
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    for split in SPLITS:
        rows = []
        for rec in read_video_text_annotations(os.path.join(source, f"{split}.jsonl")):
            image = f"images/{os.path.splitext(os.path.basename(rec.video))[0]}.png"
            frame = decode_clip(rec.video, 1, "middle").frames[0].numpy()
            Image.fromarray(frame).save(os.path.join(out_dir, image))
            rows.append(json.dumps({"image": image, "caption": list(rec.captions)}) + "\n")
        with open(os.path.join(out_dir, f"{split}.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(rows)
    with open(os.path.join(out_dir, "meta.json"), "w", encoding="utf-8") as f:
        json.dump({"source": os.path.basename(source), "frame": "middle"}, f)


def ensure_synthetic_frames(cache_dir: str | None = None, cfg: SyntheticConfig | None = None) -> str:
    """The folder of the synthetic set's frames for ``cfg`` (default ``SyntheticConfig()``; the videos are
    generated first when missing), written on first use beside the videos, rank-safe as the videos are."""
    cfg = cfg or SyntheticConfig()
    source = ensure_synthetic(cache_dir, cfg)
    final = os.path.join(cache_dir or default_cache_dir(), f"{cfg.name()}-frames")
    return ensure_folder(final, lambda tmp: write_synthetic_frames(tmp, source))


# ------------------------------------------------------------------------------------------ datamodules


class ImageTextDataModule(ClipDataModule):
    """Image-text data (annotation files or caption folders, or the synthetic frames) as one-frame clips.

    Alone it trains and evaluates a head on images (``ClipHead`` retrieval works on ``T = 1``); beside a
    video datamodule in ``datamodules.JointDataModule`` it is the image half of joint training.

    Args:
        root: folder that image paths in annotation files are relative to; default: each file's folder.
        train_annotations: JSONL / JSON / CSV file, or folder of images with ``.txt`` captions, of the train
            split. When no split has one, the synthetic set's frames are used (see ``synthetic``).
        val_annotations: the val split's file or folder; None: no validation.
        test_annotations: the test split's file or folder (predict uses it too).
        clip: input size and training augmentation of the images (one-frame clips).
        loader: batch sizes and DataLoader workers.
        on_bad_image: "skip" leaves an unusable image out of its batch and reports it in the batch's
            ``skipped``; "raise" fails with the file's path and annotation row.
        keys: the annotation files' key names (``image``, ``caption``).
        synthetic: the synthetic set whose middle frames are used when no annotations are given (a seed
            other than the videos' gives scenes the videos do not show).
    """

    collate_fn = staticmethod(collate_video_text)
    synthetic_scenarios = ("shapes",)
    unserved_scenario = "one frame cannot show what the motion scenario's captions tell, which is over time"

    def __init__(
        self,
        root: str | None = None,
        train_annotations: str | None = None,
        val_annotations: str | None = None,
        test_annotations: str | None = None,
        clip: FrameOptions = FrameOptions(),
        loader: LoaderOptions = LoaderOptions(),
        on_bad_image: OnBadSample = "skip",
        keys: AnnotationKeys = AnnotationKeys(),
        synthetic: SyntheticOptions = SyntheticOptions(),
    ) -> None:
        super().__init__(root=root, annotations=(train_annotations, val_annotations, test_annotations), clip=clip,
                         loader=loader, keys=keys, synthetic=synthetic)
        self.save_hyperparameters()
        self.on_bad_image = on_bad_image

    def prepare_data(self) -> None:
        """Write the synthetic frames if they are used and missing (atomic, as the videos)."""
        if self.synthetic:
            self.synthetic_folder()

    def annotation_path(self, split: str) -> str | None:
        """The annotations of a split (for the synthetic frames: in their cache folder)."""
        if self.synthetic:
            return os.path.join(self.synthetic_folder(), f"{split}.jsonl")
        return self.annotations[split]

    def synthetic_folder(self) -> str:
        """The folder of the synthetic set's frames, written when missing."""
        return ensure_synthetic_frames(self.synthetic_options.cache_dir, self.synthetic_options.config())

    def build_dataset(self, split: str, path: str) -> ImageTextDataset:
        return ImageTextDataset(
            read_image_text(path, *self.reading()),
            self.clip,
            train=split == "train",
            on_bad_image=self.on_bad_image,
        )


class ShardedImageTextDataset(ShardedVideoTextDataset):
    """Image-text samples from tar shards (``<key>.jpg`` + ``<key>.txt`` / ``.json``) as one-frame clips,
    read, split over ranks and workers, shuffled and skipped exactly as ``ShardedVideoTextDataset`` reads
    video shards (see ``datamodules.shards``; its options apply, ``on_bad_video`` among them); the first
    member with one of ``image_extensions`` is the image. ``clip`` is an image's ``FrameOptions``."""

    member_kind = "image"

    def __init__(self, shards: Shards, clip: FrameOptions = FrameOptions(), train: bool = False, *,
                 image_extensions: Sequence[str] = IMAGE_EXTENSIONS, **kwargs: Any) -> None:
        frame = {f.name: getattr(clip, f.name) for f in dataclasses.fields(FrameOptions)}
        one_frame = ClipOptions(num_frames=1, **frame)
        super().__init__(shards, one_frame, train, video_extensions=image_extensions, **kwargs)

    def decode(self, data: bytes, name: str) -> DecodedClip:
        return DecodedClip(decode_image(data, name), [0], 1, 1, 1)


class ImageShardDataModule(ShardDataModule):
    """Image-text data from tar shards as one-frame clips: ``ShardDataModule`` (whose options these are,
    with ``clip`` an image's ``FrameOptions``) over ``ShardedImageTextDataset``. ``on_bad_image``: "skip"
    drops unusable images and unreadable shards, "raise" fails naming ``<shard>:<key>``."""

    def __init__(
        self,
        train_shards: str | list[str] | None = None,
        val_shards: str | list[str] | None = None,
        test_shards: str | list[str] | None = None,
        clip: FrameOptions = FrameOptions(),
        loader: LoaderOptions = LoaderOptions(),
        on_bad_image: OnBadSample = "skip",
        shuffle_buffer: NonNegativeInt = 256,
        seed: int = 0,
        samples_per_epoch: PositiveInt | None = None,
    ) -> None:
        super().__init__(train_shards, val_shards, test_shards, clip=clip, loader=loader, on_bad_video=on_bad_image,
                         shuffle_buffer=shuffle_buffer, seed=seed, samples_per_epoch=samples_per_epoch)

    def build_dataset(self, shards: Shards, **kwargs: Any) -> ShardedImageTextDataset:
        return ShardedImageTextDataset(shards, **kwargs)
