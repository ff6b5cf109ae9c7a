"""Key-frame segmenters: panoptic segment ids of chosen frames of a clip, long ``(N, H, W)``, 1..K by
decreasing area, 0 = unlabelled.

- ``DirectSAMSegmenter``: DirectSAM (``chendelong/DirectSAM-1800px-0424``), a Segformer predicting boundaries;
  the regions the boundaries enclose are the segments (``components``), as TrajViT uses it.
- ``SamAutoSegmenter``: SAM's automatic mask generation (transformers' ``mask-generation`` pipeline), its masks
  painted largest first so that smaller ones stay visible on top.

Both load by hub id or local folder (``trajtok.hf.load_kwargs``); the real checkpoints are downloaded by the user.
"""

from __future__ import annotations

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch import nn

from trajtok.hf import load_kwargs, resolve_path
from trajtok.pseudo_labels.components import boundary_segments, relabel_by_area
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


class SamAutoSegmenter(nn.Module):
    """SAM's automatic masks (a grid of point prompts, then filtering and NMS) as a partition.

    Args:
        model: hub id or local folder of a ``SamModel`` with its processor (e.g. ``facebook/sam-vit-base``).
        points_per_batch: point prompts per forward pass.
        pred_iou_thresh: masks of lower predicted IoU are dropped.
        stability_score_thresh: masks of lower stability are dropped.
        min_area: segments of at most this many pixels are dropped.
        max_segments: the largest segments kept.
    """

    def __init__(self, model: str = "facebook/sam-vit-base", points_per_batch: PositiveInt = 64,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 min_area: NonNegativeInt = 16, max_segments: PositiveInt = 128) -> None:
        from transformers import SamModel, SamProcessor

        super().__init__()
        check_max_segments(max_segments)
        path = resolve_path(model)
        self.model = SamModel.from_pretrained(path, **load_kwargs(path)).eval()
        self.processor = SamProcessor.from_pretrained(path, **load_kwargs(path))
        self.options = {"points_per_batch": points_per_batch, "pred_iou_thresh": pred_iou_thresh,
                        "stability_score_thresh": stability_score_thresh}
        self.min_area, self.max_segments = min_area, max_segments

    @torch.no_grad()
    def masks(self, frame: torch.Tensor) -> torch.Tensor:
        """Bool ``(K, H, W)``: SAM's automatic masks of one uint8 ``(H, W, 3)`` frame."""
        from PIL import Image
        from transformers import pipeline

        generator = pipeline("mask-generation", model=self.model, image_processor=self.processor.image_processor,
                             device=self.model.device)
        out = generator(Image.fromarray(frame.cpu().numpy()), **self.options)
        if not out["masks"]:
            return torch.zeros(0, *frame.shape[:2], dtype=torch.bool)
        return torch.stack([torch.as_tensor(m) for m in out["masks"]]).bool()

    def forward(self, clip: Clip, frames: list[int]) -> torch.Tensor:
        out = []
        for t in frames:
            masks = self.masks(clip.frames[t])
            # Largest first, so each pixel ends with the smallest mask covering it: parts stay visible on wholes.
            order = masks.flatten(1).sum(1).argsort(descending=True)
            ids = torch.arange(1, len(masks) + 1)[:, None, None]
            labels = (masks[order] * ids).amax(0) if len(masks) else torch.zeros(clip.frames.shape[1:3], dtype=torch.long)
            out.append(relabel_by_area(labels.long(), self.min_area, self.max_segments))
        return torch.stack(out).to(clip.frames.device)
