"""Released-TrajTok files of tiny sizes, in the release layout, made without the official code.

The key names and shapes are those of the released ``model.pth`` files (``trajtok.release`` documents them); the
transformer, text tower and backbone tensors are taken from real transformers models (``ViTModel``, ``BertModel``,
``DINOv3ConvNextModel``) so that tests can compare the converted modules with them. The Perceivers' tensors are
random: their function is checked against the official code by ``tools/parity_release.py``, outside CI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trajtok.release import (
    ENCODER_PREFIX,
    SEGMENTER_PREFIX,
    TEXT_LAYERS,
    TRANSFORMER_HEADS,
    TRANSFORMER_PREFIX,
)


@dataclass(frozen=True)
class TinySizes:
    dim: int = 64
    num_slots: int = 8
    depth: int = 2
    backbone_depths: tuple[int, ...] = (1, 1, 2, 1)
    backbone_widths: tuple[int, ...] = (8, 16, 24, 32)
    vit_depth: int = 2
    embed_dim: int = 32
    text_hidden: int = 128
    text_layers: int = 12  # as the released xbert: the layers from TEXT_LAYERS on are never run
    vocab_size: int = 30522


def _rand(*shape: int, generator: torch.Generator, scale: float = 0.2) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale


def _norm(generator: torch.Generator, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Norm weights away from (1, 0), so that a norm mapped to the wrong place cannot hide."""
    return 1 + _rand(dim, generator=generator), _rand(dim, generator=generator)


def perceiver_state(prefix: str, sizes: TinySizes, generator: torch.Generator, latents: bool) -> dict[str, torch.Tensor]:
    """A released ``PerceiverResampler``'s tensors (random)."""
    d, hidden = sizes.dim, 4 * sizes.dim
    head_dim = d // 8
    rotary_dim = head_dim // 2
    out = {}
    if latents:
        out[prefix + "latents"] = _rand(sizes.num_slots, d, generator=generator)
    for name in ("norm_ctx", "norm_lat"):
        out[f"{prefix}{name}.weight"], out[f"{prefix}{name}.bias"] = _norm(generator, d)
    for layer in range(sizes.depth):
        p = f"{prefix}layers.{layer}."
        for name in ("0.norm_media", "0.norm_latents", "1.norm"):
            out[f"{p}{name}.weight"], out[f"{p}{name}.bias"] = _norm(generator, d)
        out[p + "0.to_q.weight"] = _rand(d, d, generator=generator)
        out[p + "0.to_kv.weight"] = _rand(2 * d, d, generator=generator)
        out[p + "0.to_out.weight"] = _rand(d, d, generator=generator)
        out[p + "0.rotary_emb.freqs"] = 10000.0 ** (-torch.arange(0, rotary_dim, 2).float() / rotary_dim)
        for name, shape in (("gate", (hidden, d)), ("up", (hidden, d)), ("down", (d, hidden))):
            out[f"{p}1.{name}.weight"] = _rand(*shape, generator=generator)
            out[f"{p}1.{name}.bias"] = _rand(shape[0], generator=generator)
    return out


def dinov3_backbone(sizes: TinySizes, seed: int = 0):
    """A transformers ``DINOv3ConvNextModel`` of the tiny sizes (random, its layer scales and norms perturbed)."""
    from transformers import DINOv3ConvNextConfig, DINOv3ConvNextModel

    torch.manual_seed(seed)
    model = DINOv3ConvNextModel(DINOv3ConvNextConfig(depths=list(sizes.backbone_depths),
                                                      hidden_sizes=list(sizes.backbone_widths)))
    with torch.no_grad():
        for name, value in model.named_parameters():
            if name.endswith("gamma") or "norm" in name:
                value.add_(torch.randn_like(value) * 0.2)
    return model.eval()


def backbone_state(prefix: str, model) -> dict[str, torch.Tensor]:
    """Meta's DINOv3 ConvNeXt keys of a transformers ``DINOv3ConvNextModel`` (the inverse of transformers' own
    conversion rules), with its final norm as both ``norm`` and ``norms.3``."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("layer_norm."):
            out[prefix + "norm." + key.split(".", 1)[1]] = value
            out[prefix + "norms.3." + key.split(".", 1)[1]] = value.clone()
            continue
        parts = key.removeprefix("model.").split(".")  # stages.i.layers.k.<name> or stages.i.downsample_layers.j.<w|b>
        stage = parts[1]
        if parts[2] == "downsample_layers":
            out[f"{prefix}downsample_layers.{stage}.{parts[3]}.{parts[4]}"] = value
            continue
        name = {"depthwise_conv": "dwconv", "layer_norm": "norm", "pointwise_conv1": "pwconv1",
                "pointwise_conv2": "pwconv2", "gamma": "gamma"}[parts[4]]
        out[f"{prefix}stages.{stage}.{parts[3]}.{'.'.join([name, *parts[5:]])}"] = value
    return out


def segmenter_state(prefix: str, sizes: TinySizes, generator: torch.Generator, backbone) -> dict[str, torch.Tensor]:
    """A released ``SimpleSegmenter``'s tensors under ``prefix``."""
    d = sizes.dim
    out = backbone_state(prefix + "patch_encoder.backbone.", backbone)
    for i, width in enumerate(sizes.backbone_widths):
        out[f"{prefix}patch_encoder.proj.{i}.weight"] = _rand(d, width, 1, 1, generator=generator)
        out[f"{prefix}patch_encoder.proj.{i}.bias"] = _rand(d, generator=generator)
    out[prefix + "patch_encoder.ln.weight"], out[prefix + "patch_encoder.ln.bias"] = _norm(generator, d)
    out.update(perceiver_state(prefix + "trajectory_perceiver.", sizes, generator, latents=True))
    for head in ("traj_seg_head_low_res", "patch_decoder_low_res"):
        out[f"{prefix}{head}.0.weight"] = _rand(d // 4, d, generator=generator)
        out[f"{prefix}{head}.0.bias"] = _rand(d // 4, generator=generator)
        out[f"{prefix}{head}.2.weight"] = _rand(d // 8, d // 4, generator=generator)
        out[f"{prefix}{head}.2.bias"] = _rand(d // 8, generator=generator)
    out[prefix + "log_scale"] = torch.tensor([math.log(16.0) + 0.3])
    return out


def vit_model(sizes: TinySizes, seed: int = 1):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=sizes.dim, num_hidden_layers=sizes.vit_depth, num_attention_heads=TRANSFORMER_HEADS,
                       intermediate_size=4 * sizes.dim, layer_norm_eps=1e-12, image_size=32, patch_size=16)
    model = ViTModel(config).eval()
    with torch.no_grad():
        for name, value in model.named_parameters():
            if "layernorm" in name or name.endswith("bias"):
                value.add_(torch.randn_like(value) * 0.2)
    return model


#: transformers 5's ViT layer names -> those of the transformers 4 ViT the released code vendors.
VIT_RENAMES = {"attention.q_proj": "attention.attention.query", "attention.k_proj": "attention.attention.key",
               "attention.v_proj": "attention.attention.value", "attention.o_proj": "attention.output.dense",
               "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}


def released_vit_key(key: str) -> str:
    """A transformers 5 ``ViTModel`` key as the released (transformers 4) ViT names it."""
    if not key.startswith("layers."):
        return key
    _, layer, rest = key.split(".", 2)
    for new, old in VIT_RENAMES.items():
        if rest.startswith(new + "."):
            rest = old + rest[len(new):]
    return f"encoder.layer.{layer}.{rest}"


def bert_model(sizes: TinySizes, seed: int = 2):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=sizes.vocab_size, hidden_size=sizes.text_hidden, num_hidden_layers=sizes.text_layers,
                        num_attention_heads=sizes.text_hidden // 64, intermediate_size=4 * sizes.text_hidden)
    return BertModel(config, add_pooling_layer=False).eval()


def release_file_state(kind: str = "trajvitv2", sizes: TinySizes = TinySizes(), seed: int = 0):
    """``(state_dict, parts)`` of a tiny release file; ``parts`` holds the transformers models its tensors came from
    (``backbone``, and for TrajViT-v2 ``vit`` and ``bert``)."""
    generator = torch.Generator().manual_seed(seed)
    backbone = dinov3_backbone(sizes, seed)
    state = segmenter_state(SEGMENTER_PREFIX[kind], sizes, generator, backbone)
    parts = {"backbone": backbone}
    d = sizes.dim
    if kind == "segmenter":
        # What the released segmenter file also holds: its training-only heads and an untrained text tower.
        state["vision_encoder.patch_decoder_high_res.conv_up.0.weight"] = _rand(d, d // 4, 2, 2, generator=generator)
        state["vision_encoder.traj_seg_head_high_res.0.weight"] = _rand(d // 4, d, generator=generator)
        state["text_encoder.embeddings.word_embeddings.weight"] = _rand(10, 8, generator=generator)
        state["vision_proj.weight"] = _rand(8, d, generator=generator)
        state["itm_head.weight"] = _rand(2, 8, generator=generator)
        state["temp"] = torch.tensor(0.07)
        return state, parts
    state[ENCODER_PREFIX + "latents"] = _rand(sizes.num_slots, 1, d, generator=generator)
    state.update(perceiver_state(ENCODER_PREFIX + "traj_feature_updater.", sizes, generator, latents=False))
    state[ENCODER_PREFIX + "output_projector.weight"] = _rand(d, d, generator=generator)
    state[ENCODER_PREFIX + "output_projector.bias"] = _rand(d, generator=generator)
    vit, bert = vit_model(sizes), bert_model(sizes)
    parts.update(vit=vit, bert=bert)
    state[TRANSFORMER_PREFIX + "cls_token"] = _rand(1, 1, d, generator=generator, scale=1.0)
    state.update({f"{TRANSFORMER_PREFIX}vit.{released_vit_key(k)}": v for k, v in vit.state_dict().items()})
    state["vision_encoder.norm.weight"], state["vision_encoder.norm.bias"] = _norm(generator, d)
    state["vision_proj.weight"] = _rand(sizes.embed_dim, d, generator=generator)
    state["vision_proj.bias"] = _rand(sizes.embed_dim, generator=generator)
    state["text_proj.weight"] = _rand(sizes.embed_dim, sizes.text_hidden, generator=generator)
    state["text_proj.bias"] = _rand(sizes.embed_dim, generator=generator)
    state.update({f"text_encoder.{k}": v for k, v in bert.state_dict().items()})
    state["text_encoder.embeddings.position_ids"] = torch.arange(512)[None]
    for layer in range(TEXT_LAYERS, sizes.text_layers):  # xbert's fusion layers hold cross-attention too
        state[f"text_encoder.encoder.layer.{layer}.crossattention.self.query.weight"] = _rand(
            sizes.text_hidden, sizes.text_hidden, generator=generator)
    state["itm_head.weight"] = _rand(2, sizes.text_hidden, generator=generator)
    state["itm_head.bias"] = _rand(2, generator=generator)
    state["temp"] = torch.tensor(0.05)
    return state, parts


def write_release(path, kind: str = "trajvitv2", sizes: TinySizes = TinySizes(), seed: int = 0):
    """Save a tiny release file as the release does (``{"model": ..., "meta": ...}``); returns its parts."""
    state, parts = release_file_state(kind, sizes, seed)
    torch.save({"model": state, "meta": {"epoch": 3, "global_step": 100, "source_path": "tiny"}}, path)
    return state, parts
