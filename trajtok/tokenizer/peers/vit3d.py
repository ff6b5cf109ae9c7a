"""ViT3D's tokenizer, the paper's patch baseline: every space-time tubelet is a token."""

from __future__ import annotations

import torch
from jsonargparse.typing import PositiveInt

from trajtok.tokenizer.peers.tubelets import TUBELETS, TubeletTokenizer, tubelet_ids
from trajtok.tokenizer.registry import register_tokenizer
from trajtok.tokens import TrajectoryTokens


@register_tokenizer("vit3d", sizes=TUBELETS)
class ViT3D(TubeletTokenizer):
    """ViT3D's tokenizer: every tubelet is a token, so the count is ``T/2 * H/16 * W/16`` whatever the content.

    The paper's patch baseline (2 x 16 x 16 tubelets at 224 px with a 3D position embedding); the video
    transformer that reads the tokens is the head's. No assignment: ``logits`` is ``None`` and ``labels`` give
    each tubelet its own id on the tubelet grid.
    """

    def __init__(self, dim: PositiveInt = 768, patch_size: PositiveInt = 16, tubelet_frames: PositiveInt = 2, image_size: PositiveInt = 224,
                 max_frames: PositiveInt = 64):
        super().__init__(dim, patch_size, tubelet_frames, image_size, max_frames)

    def forward(self, video: torch.Tensor) -> TrajectoryTokens:
        x = self.embed(video)
        grid = tuple(x.shape[1:4])
        tokens = x.flatten(1, 3)
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TrajectoryTokens(tokens, valid, None, tubelet_ids(x.shape[0], grid, x.device), grid)
