"""The one type that crosses from a tokenizer to a head."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TrajectoryTokens:
    """What every tokenizer returns and every head consumes.

    Attributes:
        tokens: ``(B, S, D)`` token features, ``S = K * n`` (K trajectory slots, n sub-tokens each,
            times the number of chunks for chunked long clips). Sub-tokens of one trajectory are adjacent.
        valid: ``(B, S)`` bool; a slot is valid iff its trajectory won at least one patch. Heads must
            ignore invalid tokens (key padding, or drop them).
        logits: ``(B, N, K)`` soft-assignment logits of the ``N = T * h * w`` feature-grid patches
            (t-major, then h, then w) over the K slots of the patch's own chunk, or ``None`` for
            tokenizers without an assignment (patch tubelets).
        labels: ``(B, T, h, w)`` long hard label map: the global trajectory id of each patch
            (``chunk * K + argmax``), ``-1`` where a tokenizer has no assignment.
        grid: ``(T, h, w)``, the feature grid the logits and labels live on.
        tokens_per_trajectory: n, the sub-tokens per trajectory used in this forward pass.
        chunks: C, the temporal chunks the clip was tokenised in (each with its own K slots); ``logits``
            splits into C equal runs of patches, one per chunk.
        sizes: ``(B, S)`` float, how many input tubelets each token stands for, for tokenizers that merge
            tokens (ToMe), or ``None`` (one each). Heads that attend over tokens add ``log(size)`` to the
            attention logits (ToMe's proportional attention), so a merged token weighs as its parts did.
    """

    tokens: torch.Tensor
    valid: torch.Tensor
    logits: torch.Tensor | None
    labels: torch.Tensor
    grid: tuple[int, int, int]
    tokens_per_trajectory: int = 1
    chunks: int = 1
    sizes: torch.Tensor | None = None

    @property
    def num_valid(self) -> torch.Tensor:
        """``(B,)`` the number of valid tokens per clip: what the token count adapts with."""
        return self.valid.sum(dim=1)
