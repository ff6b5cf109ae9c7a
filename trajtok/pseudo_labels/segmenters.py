"""Key-frame segmenters: panoptic segment ids of chosen frames of a clip, long ``(N, H, W)``, 1..K by
decreasing area, 0 = unlabelled.

- ``DirectSAMSegmenter``: DirectSAM (``chendelong/DirectSAM-1800px-0424``), a Segformer predicting boundaries;
  the regions the boundaries enclose are the segments (``components``), as TrajViT uses it.
- ``SAMEverythingSegmenter``: SAM's automatic mask generation (``facebook/sam-vit-base`` ... ``-huge``): a grid of
  point prompts, masks filtered by predicted IoU and stability, box NMS, then painted into one panoptic map
  (``mask_generation``); what transformers' ``mask-generation`` pipeline does, without its torchvision NMS.

They load by hub id or local folder (``trajtok.hf.load_kwargs``); the real checkpoints are downloaded by the user
(a missing folder or model is one error naming ``model.segmenter.init_args.model``: ``loading``).
Any module with the same call (``forward(clip, frames) -> (N, H, W)`` ids) plugs in by ``class_path``.
"""

from __future__ import annotations

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch import nn

from trajtok.hf import load_kwargs
from trajtok.pseudo_labels.components import boundary_segments
from trajtok.pseudo_labels.loading import loading, model_source
from trajtok.pseudo_labels.mask_generation import (
    box_nms,
    masks_to_boxes,
    panoptic_ids,
    point_grid,
    stability_score,
)
from trajtok.pseudo_labels.pipeline import Clip

#: The option that names a segmenter's model in ``configs/pseudo_labels.yaml``.
MODEL_OPTION = "model.segmenter.init_args.model"


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
        path = model_source(model, MODEL_OPTION)
        with loading(model, MODEL_OPTION):
            self.model = SegformerForSemanticSegmentation.from_pretrained(path, **load_kwargs(path)).eval()
            if self.model.config.num_labels != 1:
                raise ValueError(f"{MODEL_OPTION}={model}: a boundary model has one output channel, this one "
                                 f"{self.model.config.num_labels}")
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


class SAMEverythingSegmenter(nn.Module):
    """SAM's automatic mask generation ("segment everything"), one crop, as a panoptic map per key frame.

    Per frame: the image embedding once; an n x n grid (n = ``points_per_side``) of single-point prompts, in
    batches of ``points_per_batch``, each giving 3 masks (multimask output) and their predicted IoUs; masks kept when the
    predicted IoU reaches ``pred_iou_thresh`` and the stability score (``mask_generation.stability_score``) reaches
    ``stability_score_thresh``; duplicates removed by box NMS at ``box_nms_thresh`` (scores: predicted IoU); the
    rest painted smallest-on-top (``mask_generation.panoptic_ids``). Pre- and post-processing (resize to the
    longest side, ImageNet normalisation, padding; mask upscaling) are ``SamImageProcessorPil``'s, which needs no
    torchvision. SAM's multi-crop layers and small-region clean-up are not done.

    Args:
        model: hub id or local folder of a ``SamModel`` with its image processor.
        points_per_side: grid side (SAM: 32, so 1024 prompts a frame).
        points_per_batch: prompts per mask-decoder pass (memory: 3 low-resolution masks each, and the upscaled
            ones that pass the IoU filter).
        pred_iou_thresh: lowest predicted IoU kept (0.88).
        stability_score_thresh: lowest stability score kept (0.95).
        stability_score_offset: logit offset of the stability score (1.0).
        box_nms_thresh: box IoU above which the lower-scored mask is a duplicate (0.7).
        min_area: segments of at most this many visible pixels are dropped (16).
        max_segments: the largest segments kept (128).
    """

    def __init__(self, model: str = "facebook/sam-vit-base", points_per_side: PositiveInt = 32,
                 points_per_batch: PositiveInt = 64, pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, min_area: NonNegativeInt = 16,
                 max_segments: PositiveInt = 128) -> None:
        from transformers import SamModel
        from transformers.models.sam.image_processing_pil_sam import (
            SamImageProcessorPil,
        )

        super().__init__()
        check_max_segments(max_segments)
        if not 0 < box_nms_thresh <= 1:
            raise ValueError(f"box_nms_thresh must lie in (0, 1], got {box_nms_thresh}")
        path = model_source(model, MODEL_OPTION)
        with loading(model, MODEL_OPTION):
            self.model = SamModel.from_pretrained(path, **load_kwargs(path)).eval()
            self.processor = SamImageProcessorPil.from_pretrained(
                path, local_files_only=load_kwargs(path)["local_files_only"])
        self.points_per_side, self.points_per_batch = points_per_side, points_per_batch
        self.pred_iou_thresh, self.stability_score_thresh = pred_iou_thresh, stability_score_thresh
        self.stability_score_offset, self.box_nms_thresh = stability_score_offset, box_nms_thresh
        self.min_area, self.max_segments = min_area, max_segments

    @torch.no_grad()
    def candidates(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bool ``(Q, H, W)`` masks at the frame's resolution and their predicted IoUs ``(Q,)``: every prompt's
        masks that pass the IoU and stability filters (before NMS), of a uint8 ``(H, W, 3)`` frame."""
        inputs = self.processor(images=[frame.cpu().numpy()], return_tensors="pt")
        device = self.model.device
        embedding = self.model.get_image_embeddings(inputs["pixel_values"].to(device, self.model.dtype))
        resized_h, resized_w = inputs["reshaped_input_sizes"][0].tolist()
        # Prompts in the resized (unpadded) input's pixels, (x, y).
        points = point_grid(self.points_per_side).to(device) * torch.tensor([resized_w, resized_h], device=device)
        masks, scores = [], []
        for batch in points.split(self.points_per_batch):
            out = self.model(image_embeddings=embedding, input_points=batch[None, :, None].to(self.model.dtype),
                             input_labels=torch.ones(1, len(batch), 1, dtype=torch.long, device=device),
                             multimask_output=True)
            iou = out.iou_scores[0].flatten().float()
            low_res = out.pred_masks[0].flatten(0, 1)  # (3 * points, h, w)
            passed = iou >= self.pred_iou_thresh  # before upscaling: only these are brought to full size
            if not passed.any():
                continue
            logits = self.processor.post_process_masks([low_res[passed][None].float()], inputs["original_sizes"],
                                                       inputs["reshaped_input_sizes"], binarize=False)[0][0]
            stable = stability_score(logits, 0.0, self.stability_score_offset) >= self.stability_score_thresh
            masks.append(logits[stable] > 0)
            scores.append(iou[passed][stable])
        if not masks:
            return torch.zeros(0, *frame.shape[:2], dtype=torch.bool, device=device), torch.zeros(0, device=device)
        return torch.cat(masks), torch.cat(scores)

    def segment(self, frame: torch.Tensor) -> torch.Tensor:
        """Long ``(H, W)`` panoptic ids of a uint8 ``(H, W, 3)`` frame."""
        masks, scores = self.candidates(frame)
        keep = box_nms(masks_to_boxes(masks), scores, self.box_nms_thresh)
        return panoptic_ids(masks[keep], self.min_area, self.max_segments)

    def forward(self, clip: Clip, frames: list[int]) -> torch.Tensor:
        return torch.stack([self.segment(clip.frames[i]) for i in frames]).to(clip.frames.device)
