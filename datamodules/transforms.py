"""Torch-only clip transforms: crop boxes, resized crops, flips and ImageNet normalisation.

Every geometric transform is "choose a box, crop it, resize it to the output size", applied with one box
to all frames of a clip (a trajectory must not jump between frames) and, with nearest interpolation, to
per-frame pseudo-label masks, so masks stay aligned with the pixels they label.

Horizontal flip is off by default: it swaps left and right in the pixels but not in the captions
("moves left" would then describe a clip that moves right), which teaches the model the wrong motion
words. Use it only for data whose text has no left/right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Box:
    """A crop box in pixels of the source frame."""

    top: int
    left: int
    height: int
    width: int


def center_box(height: int, width: int, out_height: int, out_width: int) -> Box:
    """The largest centred box with the output's aspect ratio.

    Cropping it and resizing to the output equals "resize the shorter side, then centre-crop".
    """
    scale = min(height / out_height, width / out_width)
    h = max(1, min(height, round(out_height * scale)))
    w = max(1, min(width, round(out_width * scale)))
    return Box(top=(height - h) // 2, left=(width - w) // 2, height=h, width=w)


def crop_area_range(crop_scale: tuple[float, float]) -> tuple[float, float]:
    """The ``crop_scale`` option checked: the random resized crop's area range, ``0 < low <= high <= 1``."""
    try:
        low, high = (float(v) for v in crop_scale)
    except (TypeError, ValueError):
        raise ValueError(f"crop_scale={crop_scale!r} must be two numbers (low, high)") from None
    if not 0 < low <= high <= 1:
        raise ValueError(f"crop_scale={[low, high]}: the crop's area range must satisfy 0 < low <= high <= 1 "
                         "(a fraction of the frame; 1.0, 1.0 disables cropping)")
    return low, high


def random_box(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    attempts: int = 10,
) -> Box:
    """A random box covering ``scale`` of the frame's area with aspect ratio in ``ratio`` (log-uniform),
    as in Inception-style random resized crops; falls back to the centred square-ish box."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        u = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return Box(top=top, left=left, height=h, width=w)
    return center_box(height, width, min(height, width), min(height, width))


def scale_box(box: Box, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Box:
    """The same region in a frame of another resolution (pseudo-label masks are often stored smaller
    than the video)."""
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    top, left = round(box.top * sy), round(box.left * sx)
    bottom = max(top + 1, round((box.top + box.height) * sy))
    right = max(left + 1, round((box.left + box.width) * sx))
    return Box(top=top, left=left, height=min(bottom, dst_hw[0]) - top, width=min(right, dst_hw[1]) - left)


def to_float_tchw(clip: torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> float32 ``(T, 3, H, W)`` in [0, 1]."""
    if clip.dtype != torch.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
        raise ValueError(f"expected uint8 (T, H, W, 3), got {clip.dtype} {tuple(clip.shape)}")
    return clip.permute(0, 3, 1, 2).float().div_(255.0)


def resized_crop(video: torch.Tensor, box: Box, size: tuple[int, int]) -> torch.Tensor:
    """Crop float ``(T, C, H, W)`` to ``box`` and resize bilinearly (antialiased when shrinking)."""
    crop = video[:, :, box.top : box.top + box.height, box.left : box.left + box.width]
    if crop.shape[-2:] == size:
        return crop.contiguous()
    return F.interpolate(crop, size=size, mode="bilinear", align_corners=False, antialias=True)


def resized_crop_masks(masks: torch.Tensor, box: Box, size: tuple[int, int]) -> torch.Tensor:
    """Crop integer masks ``(T, H, W)`` to ``box`` and resize with nearest neighbour (ids are labels,
    not intensities, so they must not be blended)."""
    crop = masks[:, box.top : box.top + box.height, box.left : box.left + box.width]
    if crop.shape[-2:] == size:
        return crop.contiguous()
    # nearest-exact samples pixel centres, the same grid bilinear uses for the video.
    out = F.interpolate(crop[:, None].float(), size=size, mode="nearest-exact")
    return out[:, 0].to(masks.dtype)


def normalize(video: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Subtract ``mean`` and divide by ``std`` per channel of float ``(T, 3, H, W)``."""
    m = torch.tensor(mean, dtype=video.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=video.dtype).view(1, -1, 1, 1)
    return (video - m) / s


#: How evaluation frames become squares (``ClipOptions.eval_resize``).
EvalResize = Literal["crop", "squash"]


def eval_clip_transform(
    clip: torch.Tensor, size: int, masks: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Evaluation: resize shorter side + centre crop to ``size``; normalise. Returns (video, masks)."""
    _, h, w, _ = clip.shape
    box = center_box(h, w, size, size)
    return _apply(clip, box, (size, size), flip=False, masks=masks)


def squash_clip_transform(
    clip: torch.Tensor, size: int, masks: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Evaluation as the released TrajTok reads clips: each whole frame resized to ``size x size`` (the aspect
    ratio is not kept) with Pillow's bicubic filter on the 8-bit frame, then normalised; masks by nearest
    neighbour. Pillow, not torch: its filter and its rounding back to 8 bits are what the released model saw."""
    from PIL import Image

    frames = [np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BICUBIC)) for frame in clip.numpy()]
    video = to_float_tchw(torch.from_numpy(np.stack(frames)))
    if masks is not None:
        masks = resized_crop_masks(masks, Box(0, 0, *masks.shape[-2:]), (size, size))
    return normalize(video), masks


def train_clip_transform(
    clip: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.5, 1.0),
    flip: bool = False,
    masks: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training: one random resized crop for the whole clip, optional horizontal flip (off by default:
    see the module docstring), normalise. Returns (video, masks)."""
    _, h, w, _ = clip.shape
    box = random_box(h, w, scale=scale, generator=generator)
    do_flip = flip and bool(torch.rand(1, generator=generator) < 0.5)
    return _apply(clip, box, (size, size), flip=do_flip, masks=masks)


def _apply(
    clip: torch.Tensor, box: Box, size: tuple[int, int], flip: bool, masks: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Crop (before converting to float, so only the box is converted), resize, flip, normalise."""
    crop = clip[:, box.top : box.top + box.height, box.left : box.left + box.width]
    video = resized_crop(to_float_tchw(crop), Box(0, 0, box.height, box.width), size)
    if masks is not None:
        mask_box = box if masks.shape[-2:] == clip.shape[1:3] else scale_box(box, clip.shape[1:3], masks.shape[-2:])
        masks = resized_crop_masks(masks, mask_box, size)
    if flip:
        video = video.flip(-1)
        masks = None if masks is None else masks.flip(-1)
    return normalize(video), masks
