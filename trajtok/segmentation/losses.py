"""Segmentation losses on Hungarian-aligned assignment logits: softmax Dice and softmax focal.

Both read the softmax over the K slots (the soft assignment the tokenizer uses), ignore unlabelled patches
(target -1), and are computed in float32 whatever the training precision. Dice rewards covering every target
trajectory whatever its size; focal down-weights the patches already assigned right. Together they favour
finding all objects over pixel precision (the paper's reason for preferring them to cross-entropy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeFloat, PositiveFloat
from torch import nn

from trajtok.segmentation.matching import align_slots, hungarian_match


def softmax_dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1e-6) -> torch.Tensor:
    """``1 - Dice`` averaged over the target trajectories present, each sample's separately.

    ``logits (B, N, K)`` aligned to ``targets (B, N)`` (ids or -1). For target ``k`` of sample ``b``:
    ``dice = (2 * sum p_k y_k + smooth) / (sum p_k + sum y_k + smooth)`` over labelled patches, ``p`` the
    softmax over K. Ids are per sample (first-appearance ranks), so trajectory ``k`` of two clips are different
    things and are not pooled together. Zero (still differentiable) when no target is present.
    """
    labelled = (targets >= 0).unsqueeze(-1).float()
    probs = logits.float().softmax(dim=-1) * labelled
    onehot = F.one_hot(targets.clamp(min=0), logits.shape[-1]).float() * labelled
    inter = (probs * onehot).sum(dim=1)  # (B, K)
    area = onehot.sum(dim=1)
    # The clamp keeps absent targets (0 / 0 with smooth = 0) finite, in value and gradient, before masking.
    dice = (2 * inter + smooth) / (probs.sum(dim=1) + area + smooth).clamp(min=1e-12)
    present = area > 0
    return torch.where(present, 1 - dice, 0.0).sum() / present.sum().clamp(min=1)


def softmax_focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Multi-class focal loss ``-(1 - p_t)^gamma log p_t``, no class weights, mean over labelled patches.

    ``p_t`` is the softmax probability of the patch's target slot. Zero (still differentiable) when no patch is
    labelled.
    """
    labelled = targets >= 0
    log_p = logits.float().log_softmax(dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    loss = -(1 - log_p.exp()).pow(gamma) * log_p
    return (loss * labelled).sum() / labelled.sum().clamp(min=1)


class SegmentationLoss(nn.Module):
    """Hungarian-matched ``focal_weight * focal + dice_weight * dice`` on the assignment logits.

    The defaults are the paper's TrajViT2 co-training weights (contrastive + 0.5 focal + 1.0 dice); its
    segmenter pre-training uses focal + 2 dice, the same ratio.

    Args:
        focal_weight, dice_weight: weights of the two terms (0 switches a term off).
        gamma: focal focusing exponent.
        smooth: Dice smoothing.
        match_soft_weight: weight of the soft Dice in the matching cost (``matching.hungarian_match``); 0 is the
            paper's hard-IoU matching.
    """

    def __init__(
        self,
        focal_weight: NonNegativeFloat = 0.5,
        dice_weight: NonNegativeFloat = 1.0,
        gamma: NonNegativeFloat = 2.0,
        smooth: PositiveFloat = 1e-6,
        match_soft_weight: NonNegativeFloat = 0.0,
    ):
        super().__init__()
        if focal_weight < 0 or dice_weight < 0 or focal_weight + dice_weight == 0:
            raise ValueError(f"weights must be non-negative and not both 0: focal={focal_weight}, dice={dice_weight}")
        self.focal_weight = focal_weight
        self.dice_weight = dice_weight
        self.gamma = gamma
        self.smooth = smooth
        self.match_soft_weight = match_soft_weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named weighted terms ``seg_focal`` / ``seg_dice`` (those with a non-zero weight) for ``logits (B, N, K)``
        and ``targets (B, N)`` from ``labels.trajectory_targets``."""
        aligned = align_slots(logits, hungarian_match(logits, targets, self.match_soft_weight).permutation)
        losses = {}
        if self.focal_weight:
            losses["seg_focal"] = self.focal_weight * softmax_focal_loss(aligned, targets, self.gamma)
        if self.dice_weight:
            losses["seg_dice"] = self.dice_weight * softmax_dice_loss(aligned, targets, self.smooth)
        return losses

    def extra_repr(self) -> str:
        return (f"focal_weight={self.focal_weight}, dice_weight={self.dice_weight}, gamma={self.gamma}, "
                f"match_soft_weight={self.match_soft_weight}")
