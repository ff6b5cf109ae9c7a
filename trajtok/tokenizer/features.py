"""Frozen dense features from a pretrained transformers vision model (TrajAdapter, TrajVLM).

Video models (VideoMAE, V-JEPA 2: a ``tubelet_size`` in their config) read the whole clip and give a
``(T / tubelet, H / patch, W / patch)`` grid; image models (SigLIP, DINOv2, CLIP vision) read each frame and give
``(T, H / patch, W / patch)``. Prefix tokens (CLS, registers) are dropped: a patch grid is what masks can pool.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from jsonargparse.typing import PositiveInt
from torch import nn

from trajtok.hf import keep_out_of_state_dict, load_config, load_kwargs

# The normalisation of the data contract's ``video`` (see ``datamodules``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, (int, float)) else (int(value[0]), int(value[1]))


class FrozenVideoFeatures(nn.Module):
    """A frozen transformers vision model: ``video (B, T, 3, H, W) -> features (B, T', h', w', C)``.

    It never trains: no parameter requires a gradient, it stays in eval mode (no dropout, frozen norms) and runs
    under ``no_grad``. Pretrained weights are left out of ``state_dict`` (they are reloaded from
    ``name_or_path``), so a Lightning checkpoint of a probe over a 600M-parameter backbone stays small; weights
    built from a config (``pretrained=False``) are kept.

    Args:
        name_or_path: hub id or local folder (``save_pretrained``), e.g. ``MCG-NJU/videomae-base``,
            ``facebook/vjepa2-vitl-fpc64-256``, ``google/siglip-base-patch16-224``, ``facebook/dinov2-small``;
            with ``pretrained=False`` also a bare model type (``videomae``, ``dinov2``...) built from its default
            config. For a two-tower model (CLIP, SigLIP) the vision tower is used.
        pretrained: load the weights; otherwise build from the config with initialisation seeded by ``seed``.
        layer: which hidden state to read (``-1`` = last, before any final norm); default the model's
            ``last_hidden_state``.
        image_size: resize frames to this square side first (models with fixed position tables, e.g. VideoMAE,
            need their training size); default as given.
        mean, std: the pixel normalisation the model was trained with (SigLIP: 0.5, 0.5, 0.5); input video
            arrives ImageNet-normalised and is re-normalised when these differ.
        config_overrides: config fields to change (a small VideoMAE for CPU tests and configs).
        seed: initialisation seed of a model built from its config, so every process builds the same one.
        trust_remote_code: only if you trust the repository's code.
    """

    def __init__(
        self,
        name_or_path: str,
        pretrained: bool = True,
        layer: int | None = None,
        image_size: PositiveInt | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        config_overrides: dict[str, Any] | None = None,
        seed: int = 0,
        trust_remote_code: bool = False,
    ):
        super().__init__()
        from transformers.models.auto.modeling_auto import MODEL_MAPPING

        config = load_config(name_or_path, trust_remote_code, config_overrides)
        config = getattr(config, "vision_config", None) or config  # the vision tower of a two-tower model
        if type(config) not in MODEL_MAPPING:
            raise ValueError(f"{name_or_path}: no transformers model class for {type(config).__name__}")
        model_class = MODEL_MAPPING[type(config)]
        if pretrained:
            self.model, info = model_class.from_pretrained(
                name_or_path, config=config, output_loading_info=True, **load_kwargs(name_or_path, trust_remote_code)
            )
            # A frozen model with freshly initialised layers gives features that look fine and mean nothing.
            if info["missing_keys"]:
                missing = sorted(info["missing_keys"])
                raise ValueError(f"{name_or_path}: weights missing for {len(missing)} parameters, e.g. {missing[:5]}")
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = model_class(config)
        self.model.requires_grad_(False)
        self.model.eval()
        self.name_or_path = name_or_path
        self.pretrained = pretrained
        self.layer = layer
        self.image_size = image_size
        self.out_dim = int(config.hidden_size)
        self.patch = _pair(config.patch_size)
        self.tubelet = int(getattr(config, "tubelet_size", 0) or 0)  # 0: an image model
        parameters = inspect.signature(self.model.forward).parameters
        self.input_name = "pixel_values_videos" if "pixel_values_videos" in parameters else "pixel_values"
        # V-JEPA 2 also runs its masked-prediction head unless told not to.
        self.forward_kwargs = {"skip_predictor": True} if "skip_predictor" in parameters else {}
        if layer is not None:
            self.forward_kwargs["output_hidden_states"] = True
        in_mean, in_std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        scale, shift = in_std / torch.tensor(std), (in_mean - torch.tensor(mean)) / torch.tensor(std)
        self.register_buffer("scale", scale.view(3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(3, 1, 1), persistent=False)
        self.renormalise = not (torch.allclose(scale, torch.ones(3)) and torch.allclose(shift, torch.zeros(3)))
        if pretrained:
            keep_out_of_state_dict(self, "model")

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        return self

    def grid(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The feature grid ``(T', h', w')`` for an input clip of this size."""
        if self.image_size is not None:
            height = width = self.image_size
        frames = num_frames // self.tubelet if self.tubelet else num_frames
        if (self.tubelet and num_frames % self.tubelet) or height % self.patch[0] or width % self.patch[1]:
            raise ValueError(
                f"{self.name_or_path}: a {num_frames}x{height}x{width} clip does not split into "
                f"{self.tubelet or 1}x{self.patch[0]}x{self.patch[1]} patches"
            )
        return frames, height // self.patch[0], width // self.patch[1]

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        batch, frames, _, height, width = video.shape
        grid = self.grid(frames, height, width)
        x = video * self.scale + self.shift if self.renormalise else video
        if self.image_size is not None and (height, width) != (self.image_size, self.image_size):
            x = F.interpolate(x.flatten(0, 1), size=self.image_size, mode="bilinear", antialias=True)
            x = x.unflatten(0, (batch, frames))
        if not self.tubelet:
            x = x.flatten(0, 1)
        out = self.model(**{self.input_name: x}, **self.forward_kwargs)
        hidden = out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]
        per_row = grid[1] * grid[2] if not self.tubelet else grid[0] * grid[1] * grid[2]
        if hidden.shape[1] < per_row:
            raise ValueError(f"{self.name_or_path}: {hidden.shape[1]} output tokens for a grid of {per_row} patches")
        # Prefix tokens (CLS, registers) come first in every supported model.
        return hidden[:, -per_row:].reshape(batch, *grid, -1)

