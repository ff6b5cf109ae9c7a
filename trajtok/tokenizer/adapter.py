"""TrajAdapter's tokenizer: TrajTok's masks pool a frozen pretrained model's features. (The peers over the same
features, the probing baselines' patches and PatchVLM's pooled patches, are in ``trajtok.tokenizer.peers``.)"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from trajtok.checkpoint import load_tokenizer_weights
from trajtok.tokenizer.features import FrozenVideoFeatures
from trajtok.tokenizer.trajtok import TrajTok, pack_tokens, slot_valid
from trajtok.tokens import TrajectoryTokens


def resize_assignment(probs: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Soft assignment ``(B, K, t, h, w)`` resized to another grid ``size``.

    Shrinking averages (each feature cell gets the exact fraction of its area that each slot owns); growing
    interpolates trilinearly. Either way each cell's probabilities still sum to one.
    """
    if all(dst <= src for dst, src in zip(size, probs.shape[-3:])):
        return F.adaptive_avg_pool3d(probs, size)
    return F.interpolate(probs, size=size, mode="trilinear", align_corners=False)


class FeatureTrajTok(nn.Module):
    """TrajAdapter's tokenizer: TrajTok's masks, computed on pixels, pool a frozen model's features.

    The segmenter runs on the frames as in ``TrajTok`` (pre-trained, frozen or trained on, by config). Its soft
    assignment is resized to the frozen model's feature grid, where it groups the features: the trajectory
    encoder reads each trajectory's feature cells (projected to the tokenizer width) and writes n sub-tokens per
    trajectory. ``logits`` / ``labels`` in the output stay on the pixel grid (for the segmentation loss and
    metrics); ``valid`` marks the slots that own at least one feature cell.

    Args:
        trajtok: the tokenizer whose pixel encoder and segmenter give the masks and whose trajectory encoder
            makes the tokens (its ``subtokens`` / ``eval_subtokens`` / ``chunk_frames`` apply; TrajAdapter's
            default is 4 sub-tokens per trajectory).
        features: the frozen feature source.
        freeze_segmenter: no gradient into the pixel encoder and segmenter, which stay in eval mode.
        segmenter_checkpoint: a Lightning checkpoint of a TrajTok run (e.g. ``configs/segmenter.yaml``) whose
            pixel encoder and segmenter initialise these, strictly (same shapes, nothing missing); the trajectory
            encoder is not taken, since it reads other features here and may have other sub-tokens.
    """

    def __init__(
        self,
        trajtok: TrajTok,
        features: FrozenVideoFeatures,
        freeze_segmenter: bool = True,
        segmenter_checkpoint: str | None = None,
    ):
        super().__init__()
        self.trajtok = trajtok
        self.features = features
        self.freeze_segmenter = freeze_segmenter
        if segmenter_checkpoint is not None:
            load_tokenizer_weights(trajtok.pixel_encoder, segmenter_checkpoint, prefix="tokenizer.pixel_encoder.")
            load_tokenizer_weights(trajtok.segmenter, segmenter_checkpoint, prefix="tokenizer.segmenter.")
        self.feature_proj = nn.Sequential(nn.LayerNorm(features.out_dim), nn.Linear(features.out_dim, trajtok.dim))
        if freeze_segmenter:
            for part in self._segmenter_parts():
                part.requires_grad_(False)

    def _segmenter_parts(self) -> tuple[nn.Module, nn.Module]:
        return self.trajtok.pixel_encoder, self.trajtok.segmenter

    @property
    def out_dim(self) -> int:
        return self.trajtok.out_dim

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_segmenter:
            for part in self._segmenter_parts():
                part.eval()
        return self

    def forward(self, video: torch.Tensor, num_subtokens: int | None = None) -> TrajectoryTokens:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_segmenter):
            a = self.trajtok.assign(video)
        chunks = a.chunks
        features = self.features(rearrange(video, "b (c t) ch h w -> (b c) t ch h w", c=chunks))
        feature_grid = tuple(features.shape[1:4])
        cells = self.feature_proj(features.flatten(1, 3))

        probs = rearrange(a.logits.softmax(-1), "b (t h w) k -> b k t h w", t=a.grid[0], h=a.grid[1])
        probs = rearrange(resize_assignment(probs, feature_grid), "b k t h w -> b (t h w) k")
        # Log-probabilities are logits whose softmax is the resized assignment: what the encoder's soft-mean reads.
        log_probs = probs.clamp_min(1e-6).log()
        labels = probs.argmax(dim=-1)
        n = num_subtokens or self.trajtok.draw_subtokens()
        tokens = self.trajtok.encoder(cells, log_probs, labels, feature_grid, n)
        return pack_tokens(tokens, slot_valid(labels, self.trajtok.num_slots), a, n)
