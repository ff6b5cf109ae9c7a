"""Where a clip is split into chunks: fixed steps, or shot cuts found the way PySceneDetect finds them.

PySceneDetect's detectors (``scenedetect.detectors``) run on OpenCV (colour conversion, histograms), a large
native library to install beside a CPU torch; its three scores are a few lines of torch on the frames already
decoded, so ``ShotCuts`` computes them here, with TrajViT's thresholds and vote:

- content (``ContentDetector``): mean absolute difference of consecutive frames in HSV (OpenCV's 8-bit ranges:
  H 0..180, S and V 0..255), averaged over the three channels; a cut at >= 27;
- histogram (``HistogramDetector``): 1 - correlation of consecutive luma (Y of YUV) histograms; a cut at >= 0.15;
- adaptive (``AdaptiveDetector``): the content score over the mean of its ``window`` neighbours on each side;
  a cut at >= 3 when the content score is at least 15;

a frame starts a new shot when at least ``min_votes`` (2) of the three agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from jsonargparse.typing import PositiveInt


@dataclass(frozen=True)
class Chunk:
    """Frames ``start`` to ``stop - 1`` of a clip; ``cut``: a shot cut precedes it (nothing links across)."""

    start: int
    stop: int
    cut: bool = False


def chunks_at(starts: list[int], num_frames: int, cuts: set[int] = frozenset()) -> list[Chunk]:
    """Chunks beginning at sorted ``starts`` (0 among them) and covering ``num_frames`` frames."""
    stops = [*starts[1:], num_frames]
    return [Chunk(a, b, a in cuts) for a, b in zip(starts, stops)]


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """Uint8 RGB ``(..., 3)`` to float HSV in OpenCV's 8-bit ranges (H 0..180, S and V 0..255)."""
    x = rgb.float() / 255
    value, argmax = x.max(-1)
    delta = value - x.min(-1).values
    r, g, b = x.unbind(-1)
    safe = delta.clamp(min=1e-12)
    hue = torch.stack([((g - b) / safe) % 6, (b - r) / safe + 2, (r - g) / safe + 4], -1)
    hue = hue.gather(-1, argmax[..., None])[..., 0] * 30  # 60 degrees a sector, halved as OpenCV stores it
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    sat = torch.where(value > 0, delta / value.clamp(min=1e-12), torch.zeros_like(value)) * 255
    return torch.stack([hue, sat, value * 255], -1)


def content_scores(frames: torch.Tensor) -> torch.Tensor:
    """``(T,)`` ContentDetector scores of uint8 ``(T, H, W, 3)`` frames (score 0 for the first frame)."""
    hsv = rgb_to_hsv(frames)
    diff = (hsv[1:] - hsv[:-1]).abs().mean(dim=(1, 2)).mean(-1)
    return torch.cat([diff.new_zeros(1), diff])


def histogram_scores(frames: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """``(T,)`` HistogramDetector scores: 1 - correlation of consecutive frames' luma histograms."""
    weights = torch.tensor([0.299, 0.587, 0.114])
    luma = (frames.float() @ weights).round().clamp(0, 255).long().reshape(frames.shape[0], -1)
    offsets = torch.arange(frames.shape[0])[:, None] * bins
    hist = torch.bincount((luma * bins // 256 + offsets).reshape(-1), minlength=frames.shape[0] * bins)
    hist = hist.view(frames.shape[0], bins).double()
    hist = hist - hist.mean(1, keepdim=True)
    corr = (hist[1:] * hist[:-1]).sum(1) / (hist[1:].norm(dim=1) * hist[:-1].norm(dim=1)).clamp(min=1e-12)
    return torch.cat([corr.new_zeros(1), 1 - corr]).float()


def adaptive_ratios(content: torch.Tensor, window: int = 2) -> torch.Tensor:
    """``(T,)`` AdaptiveDetector ratios: each content score over the mean of the ``window`` scores on either
    side of it (fewer at the ends); the first frame scores 0."""
    padded = F.pad(content[1:][None, None], (window, window))[0, 0]
    sums = padded.unfold(0, 2 * window + 1, 1).sum(-1) - content[1:]
    counts = F.pad(torch.ones_like(content[1:])[None, None], (window, window))[0, 0].unfold(0, 2 * window + 1, 1).sum(-1) - 1
    ratio = content[1:] / (sums / counts.clamp(min=1)).clamp(min=1e-6)
    return torch.cat([ratio.new_zeros(1), ratio])


class FixedChunks:
    """Chunks of ``every`` frames (default: a quarter of the clip, TrajViT's choice without key frames).

    Args:
        every: frames per chunk; None: ``max(1, T // 4)``.
    """

    def __init__(self, every: PositiveInt | None = None) -> None:
        self.every = every

    def __call__(self, frames: torch.Tensor) -> list[Chunk]:
        num_frames = frames.shape[0]
        every = self.every or max(1, num_frames // 4)
        return chunks_at(list(range(0, num_frames, every)), num_frames)


class ShotCuts:
    """Chunks between shot cuts (see the module), optionally split further every ``max_chunk`` frames so that
    objects entering a long shot get segmented and the tracker's memory stays bounded.

    Args:
        content_threshold: ContentDetector's threshold.
        histogram_threshold: HistogramDetector's threshold.
        adaptive_threshold: AdaptiveDetector's ratio threshold.
        adaptive_min_content: AdaptiveDetector's minimum content score.
        window: AdaptiveDetector's window on each side.
        min_votes: detectors that must agree on a cut.
        size: frames are scored at this side (area-downsampled), as detectors do on downscaled frames.
        max_chunk: split shots longer than this many frames; None: one chunk per shot.
    """

    def __init__(self, content_threshold: float = 27.0, histogram_threshold: float = 0.15,
                 adaptive_threshold: float = 3.0, adaptive_min_content: float = 15.0, window: PositiveInt = 2,
                 min_votes: int = 2, size: PositiveInt = 128, max_chunk: PositiveInt | None = None) -> None:
        if not 1 <= min_votes <= 3:
            raise ValueError(f"min_votes must be 1, 2 or 3 (of three detectors), got {min_votes}")
        self.content_threshold = content_threshold
        self.histogram_threshold = histogram_threshold
        self.adaptive_threshold = adaptive_threshold
        self.adaptive_min_content = adaptive_min_content
        self.window = window
        self.min_votes = min_votes
        self.size = size
        self.max_chunk = max_chunk

    def cuts(self, frames: torch.Tensor) -> torch.Tensor:
        """Bool ``(T,)``: frame t starts a new shot (never frame 0)."""
        small = frames.permute(0, 3, 1, 2).float()
        scale = self.size / max(small.shape[-2:])
        if scale < 1:
            small = F.interpolate(small, scale_factor=scale, mode="area")
        small = small.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()
        content = content_scores(small)
        votes = ((content >= self.content_threshold).int()
                 + (histogram_scores(small) >= self.histogram_threshold).int()
                 + ((adaptive_ratios(content, self.window) >= self.adaptive_threshold)
                    & (content >= self.adaptive_min_content)).int())
        cut = votes >= self.min_votes
        cut[0] = False
        return cut

    def __call__(self, frames: torch.Tensor) -> list[Chunk]:
        num_frames = frames.shape[0]
        cuts = set(self.cuts(frames).nonzero()[:, 0].tolist())
        shots = [0, *sorted(cuts), num_frames]
        starts = []
        for a, b in pairwise(shots):
            starts.extend(range(a, b, self.max_chunk or (b - a)))
        return chunks_at(starts, num_frames, cuts)
