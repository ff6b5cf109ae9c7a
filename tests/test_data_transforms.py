"""Crop / resize / flip / normalise of clips and their masks, in torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Box,
    center_box,
    eval_clip_transform,
    normalize,
    random_box,
    scale_box,
    squash_clip_transform,
    to_float_tchw,
    train_clip_transform,
)


def square_clip(height=40, width=60, frames=3, top=10, left=30, side=12):
    """A grey clip with one red square, and the mask (id 1) of that square."""
    clip = torch.full((frames, height, width, 3), 100, dtype=torch.uint8)
    clip[:, top : top + side, left : left + side] = torch.tensor([230, 20, 20], dtype=torch.uint8)
    masks = torch.zeros(frames, height, width, dtype=torch.uint8)
    masks[:, top : top + side, left : left + side] = 1
    return clip, masks


def unnormalize(video):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return video * std + mean


def test_center_box_is_shorter_side_square():
    assert center_box(60, 100, 32, 32) == Box(0, 20, 60, 60)
    assert center_box(101, 50, 16, 16) == Box(25, 0, 50, 50)
    assert center_box(40, 40, 8, 8) == Box(0, 0, 40, 40)


def test_random_box_in_bounds_and_area():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        b = random_box(40, 60, scale=(0.5, 1.0), generator=g)
        assert b.top >= 0 and b.top + b.height <= 40 and b.left >= 0 and b.left + b.width <= 60
        area = b.height * b.width / (40 * 60)
        assert 0.45 <= area <= 1.0
        assert 3 / 4 - 0.1 <= b.width / b.height <= 4 / 3 + 0.1


def test_scale_box_maps_to_other_resolution():
    assert scale_box(Box(10, 20, 40, 40), (80, 120), (40, 60)) == Box(5, 10, 20, 20)


def test_normalize_constant_frame_exactly():
    clip = torch.full((2, 8, 8, 3), 128, dtype=torch.uint8)
    video = normalize(to_float_tchw(clip))
    for c in range(3):
        expected = (128 / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(video[:, c], torch.tensor(expected), atol=1e-6)
    with pytest.raises(ValueError):
        to_float_tchw(clip.float())


def test_eval_transform_shape_and_centre_crop():
    clip = torch.zeros(4, 30, 90, 3, dtype=torch.uint8)
    clip[:, :, :30] = 255  # left third white: cropped away by the centre crop
    video, masks = eval_clip_transform(clip, 15)
    assert video.shape == (4, 3, 15, 15) and video.dtype == torch.float32 and masks is None
    assert torch.allclose(unnormalize(video), torch.zeros(1), atol=1e-5)


def test_masks_follow_the_video_through_random_crops():
    clip, masks = square_clip()
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        video, m = train_clip_transform(clip, 24, scale=(0.3, 1.0), masks=masks, generator=g)
        assert video.shape == (3, 3, 24, 24) and m.shape == (3, 24, 24) and m.dtype == torch.uint8
        red = unnormalize(video)[:, 0] > 0.7  # red channel: square 0.9, background 0.39
        # Nearest vs bilinear differ at the square's border only.
        disagree = (red != (m == 1)).float().mean()
        assert disagree < 0.06, (seed, disagree)
        assert torch.equal(m[0], m[1])  # one crop for all frames


def test_masks_of_other_resolution_are_cropped_in_step():
    clip, masks = square_clip(height=40, width=60, top=10, left=30, side=12)
    small = masks[:, ::2, ::2].contiguous()  # masks stored at half resolution
    video, m = eval_clip_transform(clip, 20, masks=small)
    red = unnormalize(video)[:, 0] > 0.7
    assert (red != (m == 1)).float().mean() < 0.06


def test_flip_is_off_by_default_and_flips_masks_with_video():
    clip, masks = square_clip(left=2)  # square near the left edge
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        _, m = train_clip_transform(clip, 20, scale=(1.0, 1.0), masks=masks, generator=g)
        assert m[0, :, :10].sum() > 0 and m[0, :, 10:].sum() == 0  # never flipped to the right
    flipped = 0
    for _ in range(20):
        video, m = train_clip_transform(clip, 20, scale=(1.0, 1.0), flip=True, masks=masks, generator=g)
        red = unnormalize(video)[:, 0] > 0.7
        assert (red != (m == 1)).float().mean() < 0.06
        flipped += int(m[0, :, 10:].sum() > 0)
    assert 3 <= flipped <= 17


def test_squash_transform_is_pillows_bicubic_of_the_whole_frame():
    """The released TrajTok's evaluation resize: the whole frame (aspect not kept) to size x size with Pillow's
    bicubic filter on the 8-bit frame, then normalised; masks follow by nearest neighbour."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    clip = torch.randint(0, 256, (2, 48, 80, 3), dtype=torch.uint8, generator=generator)
    masks = torch.zeros(2, 48, 80, dtype=torch.uint8)
    masks[:, :, 40:] = 3  # the right half
    video, resized = squash_clip_transform(clip, 32, masks)
    expected = np.asarray(Image.fromarray(clip[1].numpy()).resize((32, 32), Image.Resampling.BICUBIC))
    torch.testing.assert_close(video[1], normalize(torch.from_numpy(expected).permute(2, 0, 1)[None].float() / 255)[0])
    assert video.shape == (2, 3, 32, 32) and resized.shape == (2, 32, 32)
    assert (resized[:, :, :16] == 0).all() and (resized[:, :, 16:] == 3).all()  # squashed, not cropped
