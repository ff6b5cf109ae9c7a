"""Hungarian matching of predicted clusters (assignment slots) to target trajectories.

Slots are unordered: which query ends up on which object is arbitrary, so before a per-slot loss can compare
logits with targets, each target trajectory is given the slot whose hard region overlaps it best, one slot per
target, maximising the summed IoU (as in the released TrajTok segmenter).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def hard_iou(predicted: torch.Tensor, targets: torch.Tensor, num_slots: int) -> torch.Tensor:
    """``(B, K, K)`` IoU of every predicted slot's hard region (rows) with every target trajectory (columns).

    ``predicted (B, N)``: argmax slot of each patch; ``targets (B, N)``: trajectory id or -1. A slot's region
    counts all its patches, ignored ones included: a cluster that spills over unlabelled background is a worse
    match for its object (the released code counts prediction sizes the same way). Intersections and target
    areas count labelled patches only.
    """
    pred = F.one_hot(predicted, num_slots).float()  # (B, N, K)
    labelled = (targets >= 0).unsqueeze(-1)
    target = F.one_hot(targets.clamp(min=0), num_slots).float() * labelled
    inter = pred.transpose(1, 2) @ target
    union = pred.sum(1).unsqueeze(2) + target.sum(1).unsqueeze(1) - inter
    return inter / union.clamp(min=1)


def soft_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(B, K, K)`` Dice of every slot's soft assignment (rows) with every target trajectory (columns), over
    labelled patches: the overlap the Dice loss measures, defined even where the hard regions are empty."""
    labelled = (targets >= 0).unsqueeze(-1)
    probs = logits.float().softmax(dim=-1) * labelled
    target = F.one_hot(targets.clamp(min=0), logits.shape[-1]).float() * labelled
    inter = probs.transpose(1, 2) @ target
    return 2 * inter / (probs.sum(1).unsqueeze(2) + target.sum(1).unsqueeze(1)).clamp(min=1e-6)


@dataclass
class Matching:
    """The outcome of matching one batch.

    Attributes:
        permutation: ``(B, K)`` long; aligned channel ``j`` is predicted slot ``permutation[b, j]``. A present
            target ``j`` gets its matched slot; the unmatched slots fill the other channels in order.
        iou: ``(B, K)`` IoU of target ``j`` with its matched slot (0 where target ``j`` is absent).
        present: ``(B, K)`` bool, target ``j`` exists in the sample.
    """

    permutation: torch.Tensor
    iou: torch.Tensor
    present: torch.Tensor


def hungarian_match(logits: torch.Tensor, targets: torch.Tensor, soft_weight: float = 0.0) -> Matching:
    """Match the hard argmax clusters of ``logits (B, N, K)`` to ``targets (B, N)`` by maximum total IoU.

    ``soft_weight > 0`` adds that multiple of the soft Dice (``soft_dice``) to the IoU in the cost. The hard
    IoU alone cannot tell slots apart that win no patch, nor targets that all sit inside one cluster: once a
    from-scratch segmenter collapses to one cluster, every clip's targets land on the same arbitrary slots and
    the loss can only teach the marginal. The soft term matches each target to the slot already leaning
    towards it, which lets small differences grow. ``Matching.iou`` is always the hard IoU.

    Sample ``b`` solves an ``n_b x K`` assignment (its ``n_b`` present targets against all slots) with scipy's
    ``linear_sum_assignment`` on ``-IoU``: the solver call per sample is the only loop; the IoU matrices are
    computed for the whole batch and moved to the CPU once.
    """
    batch, _, num_slots = logits.shape
    with torch.no_grad():
        iou = hard_iou(logits.argmax(dim=-1), targets, num_slots)  # (B, K pred, K target)
        score = iou + soft_weight * soft_dice(logits, targets) if soft_weight else iou
        labelled = (targets >= 0).unsqueeze(-1)
        present = (F.one_hot(targets.clamp(min=0), num_slots) * labelled).amax(dim=1) > 0  # (B, K)
        cost = (-score.transpose(1, 2)).cpu().numpy()  # (B, target, pred)
        present_cpu = present.cpu()
        permutation = torch.empty(batch, num_slots, dtype=torch.long)
        for b in range(batch):
            rows = present_cpu[b].nonzero().flatten()
            _, slots = linear_sum_assignment(cost[b, rows.numpy()])  # row i of the subproblem is target rows[i]
            slots = torch.from_numpy(slots).long()
            free = torch.ones(num_slots, dtype=torch.bool)
            free[slots] = False
            permutation[b, rows] = slots
            permutation[b, ~present_cpu[b]] = free.nonzero().flatten()
        permutation = permutation.to(logits.device)
        matched = iou.gather(1, permutation.unsqueeze(1)).squeeze(1)  # iou[b, perm[b, j], j]
    return Matching(permutation, matched * present, present)


def align_slots(logits: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """``(B, N, K)`` logits with channel ``j`` taken from slot ``permutation[b, j]``: matched slots line up
    with target ids, so per-channel losses compare each target with its own cluster."""
    return logits.gather(2, permutation.unsqueeze(1).expand_as(logits))
