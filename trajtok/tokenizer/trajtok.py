"""TrajTok: pixels to trajectory tokens in one forward pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt
from torch import nn

from trajtok.tokenizer.attention import PerceiverOptions
from trajtok.tokenizer.pixel_encoder import (
    PIXEL_ENCODERS,
    STRIDE,
    ConvPyramid,
    PixelEncoder,
)
from trajtok.tokenizer.position import RotaryForm
from trajtok.tokenizer.recompute import (
    RecomputePolicy,
    recompute_in_backward,
    recomputes,
)
from trajtok.tokenizer.registry import register_tokenizer
from trajtok.tokenizer.segmenter import Segmenter
from trajtok.tokenizer.trajectory_encoder import (
    AttentionForm,
    TrajectoryEncoder,
    pick_attention_form,
    soft_mean,
)
from trajtok.tokens import TrajectoryTokens

ALLOWED_SUBTOKENS = (1, 2, 4)

#: tiny_lite recomputes from 4 clips of 32 frames at 64 px on (2^15 patches): long clips' memory, short clips' speed.
TINY_RECOMPUTE_PATCHES = 32768
_TINY = {"dim": 128, "num_slots": 32, "depth": 2, "heads": 4, "head_dim": 32, "assign_dim": 64,
         "encoder": {"widths": (32, 64, 96, 128), "depths": (1, 1, 1, 1)}}
#: TrajTok's sizes (its own keyword arguments; ``encoder`` the pixel encoder's: ``kind`` and its arguments).
PRESETS: dict[str, dict[str, Any]] = {
    # CPU-sized: 64-112 px, 8 frames, fits a 2-core test suite.
    "tiny": _TINY,
    "small": {"dim": 256, "num_slots": 64, "depth": 2, "heads": 8, "head_dim": 32, "assign_dim": 64,
              "encoder": {"widths": (48, 96, 192, 384), "depths": (2, 2, 4, 2)}},
    # The paper's: 224 px, 8 frames, K = 128, D = 512, Perceiver depth 2 with 8 heads, ConvNeXt-T-sized pyramid.
    "base": {"dim": 512, "num_slots": 128, "depth": 2, "heads": 8, "head_dim": 64, "assign_dim": 64,
             "encoder": {"widths": (96, 192, 384, 768), "depths": (3, 3, 9, 3)}},
    # The efficient layout at 224 px: a pretrained EfficientNet-Lite0 pyramid (fine-tuned) instead of a ConvNeXt-T
    # trained from scratch; the per-patch work (pyramid fusion, both Perceivers, the assignment head) at width 128
    # on the 56 x 56 grid, the tokens projected to 512 at the end (per-patch costs fall with the width squared, the
    # K tokens cost next to nothing); the segmenter's queries on a 2 x 2-pooled context; per-patch activations
    # recomputed in the backward. Its tokenizer FLOPs against base's: ``python -m benchmarks.flops``.
    "lite": {"dim": 128, "token_dim": 512, "num_slots": 128, "depth": 2, "heads": 4, "head_dim": 32,
             "assign_dim": 64, "context_pool": 2, "recompute": True, "encoder": {"kind": "efficientnet_lite"}},
    # The efficient layout at the CPU scale (configs/layouts/lite.yaml): tiny's, with the segmenter's queries reading
    # at most 8 frames (a longer clip's context pooled in time to fit, so their cost stops growing with T; clips of up
    # to 8 frames are read whole: the paper's layout) and recomputation for batches of 2^15 patches and more. Pooling
    # 8-frame clips too, or 2 x 2 in space, cost retrieval (``python -m benchmarks.quality --layout NAME`` on a layout
    # that pools so). It keeps tiny's pyramid: at 64 px the pretrained EfficientNet-Lite0
    # (configs/layouts/pretrained_encoder.yaml) fits slower and segments worse
    # (``python -m benchmarks.quality --layout pretrained_encoder``: its fit-minutes and object mIoU columns).
    "tiny_lite": {**_TINY, "context_frames": 8, "recompute": TINY_RECOMPUTE_PATCHES},
}


class TrajTok(nn.Module):
    """The trajectory tokenizer: ``video (B, T, 3, H, W) -> TrajectoryTokens``.

    A pixel encoder gives a feature map per frame at 1/4 resolution; the segmenter clusters all patches of the
    clip into at most ``num_slots`` trajectories; the trajectory encoder turns each into ``n`` sub-tokens.
    The number of valid tokens is the number of non-empty clusters: it follows the content, not T.

    Args:
        dim: width D of the per-patch features and of both Perceivers.
        token_dim: width of the output tokens (default D). A narrower D than the tokens is the efficient layout:
            every per-patch projection (pixel-encoder fusion, keys and values of both Perceivers, the
            assignment head) costs O(T * H * W * D^2), the tokens only O(K * D * token_dim).
        num_slots: K, the maximum number of trajectories per clip (per chunk).
        pixel_encoder: any ``PixelEncoder`` with ``out_dim == dim``; default a small ConvNet pyramid.
        depth, heads, head_dim: both Perceivers (segmenter queries and trajectory encoder).
        assign_dim: width of the query-patch cosine space.
        subtokens: sub-tokens per trajectory drawn uniformly per training step (Matryoshka), from {1, 2, 4}.
        eval_subtokens: n at inference; default the largest of ``subtokens``.
        detach_features: the segmenter's Perceiver reads detached features (ablation switch).
        init_scale, scale_gain: the segmenter's logit scale at initialisation and its learning-rate multiplier
            (see ``Segmenter``).
        soft_mean_init: trajectory latents start from the soft-mean of their patches (ablation switch).
        position_features: space-time Fourier position added to the patches the trajectory encoder reads.
        attention: masked-attention form of the trajectory encoder: ``segment``, ``dense`` or ``auto``.
        rotary: both Perceivers' rotary position: ``axial`` (3-axis, on patch keys) or ``sequence`` (the released
            code's 1D rotary on queries and keys over the flattened latent-then-patch sequence), or ``none``.
        encoder_rotary: the trajectory encoder's, if not ``rotary``. With ``none`` its patches carry their position
            through ``position_features`` alone, and its attention needs no per-patch keys either
            (``segment_attention``): a faster encoder (``python -m benchmarks.tokenizer_speed --parts C``, its
            ``absorbed`` column) but worse retrieval (``python -m benchmarks.quality --layout NAME``, with a
            ``configs/layouts/NAME.yaml`` that sets it), so no preset uses it.
        context_pool, context_pool_frames: the segmenter's queries read the patches average-pooled over windows
            of ``context_pool`` squared patches and ``context_pool_frames`` frames, the assignment stays per patch
            (see ``Segmenter``); 1 and 1 are the paper's layout.
        context_frames: the segmenter's queries read at most this many frames, longer clips pooled in time to fit
            (``Segmenter``): their cost stops growing with T, and clips up to this length keep the paper's layout.
        recompute: training keeps fewer per-patch activations: the pixel encoder's, the assignment head's and the
            trajectory encoder's (positioned patches, per-layer keys) are recomputed in the backward. ``True``
            always, or from a number of patches per batch on (``recomputes``). It pays where activations bind
            memory (long clips, big batches: a training step's peak memory falls) and costs a re-run of those parts
            in every backward, so a patch budget keeps short clips at full speed. A training step's peak memory
            and time are measured by ``python -m benchmarks.speed --steps train`` (its ``TrajViT2 (lite)`` rows
            recompute; it has no switch for recomputation alone).
        chunk_frames: split clips longer than this into chunks tokenised in parallel, tokens concatenated in
            time order (cross-chunk identity is not modelled, as in the paper).
        perceiver: both Perceivers' norms and MLP (``PerceiverOptions``; ``RELEASED_PERCEIVER`` is the released
            code's).
        encoder_code_norm, encoder_visible_tail: the trajectory encoder's ``code_norm`` and ``visible_tail``
            (see ``TrajectoryEncoder``); off and 2 in the released layout.
    """

    def __init__(
        self,
        dim: PositiveInt = 128,
        num_slots: PositiveInt = 32,
        pixel_encoder: PixelEncoder | None = None,
        token_dim: PositiveInt | None = None,
        depth: NonNegativeInt = 2,
        heads: PositiveInt = 4,
        head_dim: PositiveInt = 32,
        assign_dim: PositiveInt = 64,
        subtokens: tuple[int, ...] = (1,),
        eval_subtokens: PositiveInt | None = None,
        detach_features: bool = True,
        init_scale: PositiveFloat = 10.0,
        scale_gain: PositiveFloat = 10.0,
        soft_mean_init: bool = True,
        position_features: bool = True,
        attention: AttentionForm = "auto",
        chunk_frames: PositiveInt | None = None,
        rotary: RotaryForm = "axial",
        encoder_rotary: RotaryForm | None = None,
        context_pool: PositiveInt = 1,
        context_pool_frames: PositiveInt = 1,
        context_frames: PositiveInt | None = None,
        recompute: RecomputePolicy = False,
        perceiver: PerceiverOptions = PerceiverOptions(),
        encoder_code_norm: bool = True,
        encoder_visible_tail: NonNegativeInt = 0,
    ):
        super().__init__()
        subtokens = tuple(subtokens)
        if not subtokens or any(n not in ALLOWED_SUBTOKENS for n in subtokens):
            raise ValueError(f"subtokens={subtokens}: each must be one of {ALLOWED_SUBTOKENS}")
        if eval_subtokens is not None and eval_subtokens not in subtokens:
            raise ValueError(f"eval_subtokens={eval_subtokens} is not one of subtokens={subtokens}")
        if chunk_frames is not None and chunk_frames < 1:
            raise ValueError(f"chunk_frames={chunk_frames} must be positive")
        pixel_encoder = pixel_encoder if pixel_encoder is not None else ConvPyramid(out_dim=dim)
        if pixel_encoder.out_dim != dim:
            raise ValueError(f"pixel_encoder.out_dim={pixel_encoder.out_dim} must equal dim={dim}")
        if recompute is not False and any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
                             for m in pixel_encoder.modules()) and not getattr(pixel_encoder, "frozen", False):
            raise ValueError(f"recompute={recompute} would update the batch-norm statistics of the pixel encoder twice a step "
                             "(its forward runs again in the backward); freeze it or leave recompute off")
        self.dim = dim
        self.token_dim = token_dim or dim
        self.num_slots = num_slots
        self.subtokens = subtokens
        self.eval_subtokens = eval_subtokens or max(subtokens)
        self.chunk_frames = chunk_frames
        self.recompute = recompute
        self.pixel_encoder = pixel_encoder
        self.segmenter = Segmenter(
            dim, num_slots, depth, heads, head_dim, assign_dim, detach_features, init_scale, scale_gain, rotary=rotary,
            context_pool=context_pool, context_pool_frames=context_pool_frames, context_frames=context_frames,
            recompute=recompute, perceiver=perceiver,
        )
        self.encoder = TrajectoryEncoder(
            dim, num_slots, max(subtokens), depth, heads, head_dim, soft_mean_init, position_features, attention,
            encoder_rotary or rotary,
            out_dim=self.token_dim, recompute=recompute, perceiver=perceiver, code_norm=encoder_code_norm,
            visible_tail=encoder_visible_tail,
        )

    @property
    def out_dim(self) -> int:
        return self.token_dim

    def max_tokens(self, num_frames: int, num_subtokens: int | None = None) -> int:
        """The number of token slots (valid or not) for a clip of ``num_frames``."""
        n = num_subtokens or self.eval_subtokens
        return self.num_chunks(num_frames) * self.num_slots * n

    def num_chunks(self, num_frames: int) -> int:
        if self.chunk_frames is None or num_frames <= self.chunk_frames:
            return 1
        if num_frames % self.chunk_frames:
            raise ValueError(f"{num_frames} frames do not split into chunks of chunk_frames={self.chunk_frames}")
        return num_frames // self.chunk_frames

    def draw_subtokens(self) -> int:
        if not self.training:
            return self.eval_subtokens
        return self.subtokens[int(torch.randint(len(self.subtokens), ()))]

    def assign(self, video: torch.Tensor) -> Assignment:
        """Pixel features and the segmenter's assignment of ``video (B, T, 3, H, W)``, per chunk."""
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (B, T, 3, H, W), got {tuple(video.shape)}")
        frames = video.shape[1]
        chunks = self.num_chunks(frames)
        clips = rearrange(video, "b (c t) ch h w -> (b c t) ch h w", c=chunks)
        patches = clips.shape[0] * clips.shape[-2] * clips.shape[-1] // 16  # of the 1/4-resolution grid
        features = recompute_in_backward(self.pixel_encoder, clips, enabled=recomputes(self.recompute, patches))
        grid = (frames // chunks, *features.shape[-2:])
        patches = rearrange(features, "(bc t) d h w -> bc (t h w) d", t=grid[0])
        logits, _ = self.segmenter(patches, grid)
        return Assignment(patches, logits, logits.argmax(dim=-1), grid, chunks)

    def forward(self, video: torch.Tensor, num_subtokens: int | None = None, encode: bool = True) -> TrajectoryTokens:
        """Tokenise ``video (B, T, 3, H, W)``.

        ``encode=False`` is a segmentation-only pass (segmenter pre-training): the trajectory encoder is skipped
        and each slot's token is the soft-mean of its patch features, the encoder's own starting point (through
        the encoder's output projection when ``token_dim`` differs from ``dim``). Shapes, ``valid``, ``logits``
        and ``labels`` are those of a full pass.
        """
        a = self.assign(video)
        n = num_subtokens or self.draw_subtokens()
        if encode:
            tokens = self.encoder(a.patches, a.logits, a.labels, a.grid, n)
        else:
            tokens = soft_mean(a.logits, a.patches).repeat_interleave(n, dim=1)
            if self.token_dim != self.dim:
                tokens = self.encoder.proj(tokens)
        return pack_tokens(tokens, slot_valid(a.labels, self.num_slots), a, n)


@register_tokenizer("trajtok", sizes=PRESETS, scales={"lite": "base", "tiny_lite": "tiny"})
def build_trajtok(encoder: dict[str, Any] | None = None, **kwargs: Any) -> TrajTok:
    """TrajTok from a preset's arguments: ``encoder`` (``kind`` and arguments) builds the pixel encoder at the
    preset's width unless ``pixel_encoder`` is given."""
    if "pixel_encoder" not in kwargs:
        encoder = dict(encoder or {})
        kwargs["pixel_encoder"] = PIXEL_ENCODERS[encoder.pop("kind", "conv_pyramid")](out_dim=kwargs["dim"], **encoder)
    return TrajTok(**kwargs)


def auto_attention_form(sizes: dict[str, Any], frames: int, pixels: int, device: torch.device) -> str:
    """The trajectory encoder's attention form that ``auto`` picks for a TrajTok built with ``sizes`` (a preset's
    keyword arguments) on ``frames`` frames of ``pixels`` x ``pixels`` on ``device`` (one sub-token)."""
    rotary = sizes.get("encoder_rotary") or sizes.get("rotary", "axial")
    return pick_attention_form("auto", device, sizes["num_slots"], frames * (pixels // STRIDE) ** 2,
                               sizes["heads"] * sizes["head_dim"], absorbed=rotary == "none")


@dataclass
class Assignment:
    """The segmenter's view of a clip, one row per chunk (``B * C`` rows).

    Attributes:
        patches: ``(B*C, N, D)`` pixel-encoder features, t-major over the chunk's ``grid``.
        logits: ``(B*C, N, K)`` assignment logits; ``labels``: ``(B*C, N)`` their argmax.
        grid: ``(t, h, w)`` of one chunk; ``chunks``: C.
    """

    patches: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    grid: tuple[int, int, int]
    chunks: int


def slot_valid(labels: torch.Tensor, num_slots: int) -> torch.Tensor:
    """``(B, K)`` bool: slot k won at least one of the patches in ``labels (B, N)``."""
    won = torch.zeros(labels.shape[0], num_slots, dtype=torch.bool, device=labels.device)
    return won.scatter_(1, labels, True)


def pack_tokens(tokens: torch.Tensor, valid: torch.Tensor, a: Assignment, n: int) -> TrajectoryTokens:
    """Per-chunk tokens ``(B*C, K*n, D)`` and slot validity ``(B*C, K)`` as one clip's ``TrajectoryTokens``,
    chunks concatenated in time order; labels become global trajectory ids (chunk c owns ``[c*K, (c+1)*K)``)."""
    chunks, num_slots = a.chunks, a.logits.shape[-1]
    batch = a.labels.shape[0] // chunks
    chunk_offset = num_slots * torch.arange(chunks, device=a.labels.device).repeat(batch)
    global_labels = a.labels + chunk_offset[:, None]
    t, h, w = a.grid
    return TrajectoryTokens(
        tokens=rearrange(tokens, "(b c) s d -> b (c s) d", c=chunks),
        valid=rearrange(valid.repeat_interleave(n, dim=1), "(b c) s -> b (c s)", c=chunks),
        logits=rearrange(a.logits, "(b c) n k -> b (c n) k", c=chunks),
        labels=rearrange(global_labels, "(b c) (t h w) -> b (c t) h w", c=chunks, h=h, w=w),
        grid=(chunks * t, h, w),
        tokens_per_trajectory=n,
        chunks=chunks,
    )
