"""Key-frame segmenters: panoptic segment ids of chosen frames of a clip, long ``(N, H, W)``, 1..K by
decreasing area, 0 = unlabelled.

- ``DirectSAMSegmenter``: DirectSAM (``chendelong/DirectSAM-1800px-0424``), a Segformer predicting boundaries;
  the regions the boundaries enclose are the segments (``components``), as TrajViT uses it.

It loads by hub id or local folder (``trajtok.hf.load_kwargs``); the real checkpoint is downloaded by the user.
SAM's automatic mask generation is not offered: transformers' ``mask-generation`` post-processing (its NMS)
needs torchvision, which cannot be installed beside the pinned CPU torch. Any module with the same call
(``forward(clip, frames) -> (N, H, W)`` ids) plugs in by ``class_path``.
"""

from __future__ import annotations

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch import nn

from trajtok.hf import load_kwargs, resolve_path
from trajtok.pseudo_labels.components import boundary_segments
from trajtok.pseudo_labels.pipeline import Clip


def check_max_segments(max_segments: int) -> None:
    """The mask files store uint8 ids."""
    if not 1 <= max_segments <= 255:
        raise ValueError(f"max_segments must lie in 1..255 (uint8 mask ids), got {max_segments}")


class DirectSAMSegmenter(nn.Module):
    """Segments enclosed by DirectSAM's boundaries.

    Args:
        model: hub id or local folder of a ``SegformerForSemanticSegmentation`` boundary model (one output channel)
            with its image processor.
        threshold: pixels whose boundary probability is below it are interior (TrajViT: 0.2).
        min_area: segments of at most this many pixels are dropped (16).
        max_segments: the largest segments kept (128).
        dilation: 5x5 growth steps filling the boundary gaps (2).
        batch_size: key frames per forward pass.
    """

    def __init__(self, model: str = "chendelong/DirectSAM-1800px-0424", threshold: float = 0.2,
                 min_area: NonNegativeInt = 16, max_segments: PositiveInt = 128, dilation: NonNegativeInt = 2,
                 batch_size: PositiveInt = 4) -> None:
        from transformers import AutoImageProcessor, SegformerForSemanticSegmentation

        super().__init__()
        check_max_segments(max_segments)
        path = resolve_path(model)
        self.model = SegformerForSemanticSegmentation.from_pretrained(path, **load_kwargs(path)).eval()
        if self.model.config.num_labels != 1:
            raise ValueError(f"{model}: a boundary model has one output channel, this one {self.model.config.num_labels}")
        self.processor = AutoImageProcessor.from_pretrained(path, **load_kwargs(path))
        self.threshold, self.min_area, self.max_segments = threshold, min_area, max_segments
        self.dilation, self.batch_size = dilation, batch_size

    @torch.no_grad()
    def boundary_probability(self, frames: torch.Tensor) -> torch.Tensor:
        """Float ``(N, H, W)`` boundary probabilities of uint8 ``(N, H, W, 3)`` frames, at their resolution."""
        out = []
        for batch in frames.split(self.batch_size):
            inputs = self.processor(images=list(batch.cpu().numpy()), return_tensors="pt")
            pixels = inputs["pixel_values"].to(self.model.device, self.model.dtype)
            logits = self.model(pixel_values=pixels).logits[:, :1].float()
            logits = nn.functional.interpolate(logits, size=frames.shape[1:3], mode="bilinear", align_corners=False)
            out.append(logits[:, 0].sigmoid())
        return torch.cat(out)

    def forward(self, clip: Clip, frames: list[int]) -> torch.Tensor:
        prob = self.boundary_probability(clip.frames[frames])
        labels = boundary_segments(prob, self.threshold, self.min_area, self.max_segments, self.dilation)
        return labels.to(clip.frames.device)
