#!/usr/bin/env python
"""Parity check between the authors' released TrajTok code and this project's converted modules.

The authors release two checkpoints (``michaelzch001/trajtok-segmenter`` and ``michaelzch001/trajtok-trajvitv2``),
each a ``model.pth`` holding ``{"model": state_dict, "meta": {...}}`` (see ``docs`` / the release spec). The real
files cannot be downloaded here, so this script builds the two official models from the official sources at
full size with *random* weights, saves them in the release layout, records what the official code computes on a
fixed input, and then checks that ``trajtok convert`` + this project's modules compute the same function.

It has two halves, run in two different Python environments:

``official``  (a side virtual environment, never this project's; never in CI)
    Imports the official sources from a checkout given with ``--official`` (GitHub hellomuffin/trajtok; nothing
    of it is copied here), seeds torch and builds

    * the segmenter as released: ``SegmentWrapper`` (``segmenter/configs/pretrain.yaml``) holding
      ``SimpleSegmenter(high_res=True)`` with the DINOv3 ConvNeXt-S backbone (``dinov3_small``), width 512,
      K = 128 trajectories, Perceiver depth 2, plus its untrained BERT / projections;
    * TrajViT-v2: ``SegmentCLIP`` (``trajvitv2/configs/pretrain.yaml``): its own segmenter, the
      ``SegmentTokenizer`` trajectory encoder, the vendored HF ViT (24 layers, width 512) and the BERT text tower.

    Every parameter the official init leaves constant (LayerNorm weights and biases, zero biases, ConvNeXt layer
    scales, ``log_scale``) is randomised, so a mapping mistake cannot hide behind an identity-like value. Both
    models are saved with ``torch.save`` in the release layout (and re-read with ``weights_only=True``), the
    segmenter release is re-loaded the way the official eval drivers load it (``eval_davis.py``:
    ``SimpleSegmenter(high_res=False)``, ``vision_encoder.`` stripped), and on a fixed random clip
    (1 x 8 x 3 x 224 x 224, ImageNet-normalised) and three captions the official intermediates are written to one
    ``.pt`` file: pixel features F (B, T*56*56, 512), assignment logits (B, N, 128), hard labels, the 128
    trajectory tokens and ``valid``, the video embedding (``vision_proj`` + L2), the text input ids and the text
    embeddings (``text_proj`` + L2). A JSON file next to it records the facts checked on the official code
    (mask of the trajectory encoder, the ViT attention implementation, the BERT layers run, ...).

    Run-time patches (the official files on disk are never edited):

    1. ``import timm`` at the top of ``backbones/dinov3_convnext.py`` (used only by the unused CLIP-ResNet
       backbone) is satisfied by an empty stand-in module while that file is imported;
    2. ``DINOResNetHierFeat`` is always built with ``load_pretrained=False`` (the official constructor demands a
       Meta weight file; the weights are random here anyway) from the dinov3 repository given with ``--dinov3``
       (``TRAJTOK_DINOV3_ROOT``, loaded through ``torch.hub`` as the official code does);
    3. ``xbert.BertModel.from_pretrained("bert-base-uncased", config=...)`` builds the model from that config with
       random weights (no hub access);
    4. ``ViTConfig.from_pretrained("google/vit-large-patch16-224-in21k")`` in ``traj_transformer`` returns that
       hub config's values (transformers defaults with hidden 1024, 24 layers, 16 heads, FFN 4096); the official
       code then overrides the width to 512 / FFN 2048 itself;
    5. ``BertTokenizer.from_pretrained("bert-base-uncased")`` is replaced by the repository's own
       ``BertTokenizer`` over the ``vocab.txt`` given with ``--vocab`` (uncased, 30 522 entries);
    6. ``trajvitv2/configs/pretrain.yaml`` does not parse (line 33: ``sav_train:['...`` has no space): the text is
       fixed in memory; its ``bert_config`` (an OmegaConf interpolation that the driver reads literally) and the
       segmenter's relative ``configs/config_bert.json`` are set to ``<official>/segmenter/configs/config_bert.json``.

    The released retrieval driver (``eval_video_retrieval.py``) tokenises the raw captions (no ``pre_text``; the
    training data sets do apply ``pre_text``): the raw strings are used, and the ``pre_text`` forms are recorded
    for information. Its text path (``model.text_proj(pooled[:, 0])`` on an already pooled ``(B, 768)`` tensor)
    would fail; the text embedding recorded here is ``normalize(text_proj(CLS))``, what ``get_sim`` computes.

``ours``  (this project's environment, ``.venv``)
    Runs ``trajtok convert`` on both saved release files, loads each with ``TrajTokModule.load_from_checkpoint``
    and feeds the same clip and captions through ``tokenizer.pixel_encoder``, ``tokenizer.assign``,
    ``tokenizer(video)``, ``head.encode_video`` and ``head.encode_text``. It prints a table (stage, max |diff|,
    max |ref|), the hard-label agreement and the ``valid`` equality, and exits with status 1 when the labels are
    not 100 % equal or a stage differs by more than ``--atol`` (1e-4) absolute. Rows marked "(official input)"
    feed the official intermediate into the project's next stage, to localise a difference.

Side environment (Python 3.11; torch must stay pinned, an unpinned torch pulls a CUDA build)::

    python3.11 -m venv /work/side/venv
    echo "torch==2.13.0" > /work/side/constraints.txt
    /work/side/venv/bin/pip install torch==2.13.0 -c /work/side/constraints.txt
    /work/side/venv/bin/pip install -c /work/side/constraints.txt transformers==4.46.3 rotary-embedding-torch==0.9.1 \\
        einops einops-exts easydict omegaconf pyyaml numpy pillow scipy
    mkdir -p /work/side/official
    git --git-dir=<mirror of hellomuffin/trajtok> archive HEAD | tar -x -C /work/side/official

transformers must be < 5 (the vendored ViT imports ``find_pruneable_heads_and_indices``) and >= 4.36 (SDPA
selection, which drops the ViT key-padding mask). ``--dinov3`` is a checkout of facebookresearch/dinov3 (its
``hubconf.py``), or any folder with a ``hubconf.py`` exposing ``dinov3_convnext_small(pretrained=False)`` and the
``dinov3/models/convnext.py`` module.

Usage::

    /work/side/venv/bin/python tools/parity_release.py official --official /work/side/official \\
        --dinov3 /work/side/dinov3 --vocab <folder with vocab.txt> --out /work/side/parity
    .venv/bin/python tools/parity_release.py ours --out /work/side/parity --text_vocab <folder with vocab.txt>

The official half takes a few minutes on one CPU thread (the DINOv3 ConvNeXt-S on 8 frames at 224 px and the
Perceivers over 25 088 patches, twice).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.machinery
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

CAPTIONS = [
    "A man is playing a guitar on stage.",
    "Two DOGS run across a snowy field -- chasing a red ball!",
    (
        "In a long, carefully framed shot, a woman in a yellow raincoat walks her bicycle along a crowded harbour "
        "while fishing boats unload their catch, gulls circle overhead, children chase each other between stacks "
        "of crates, an old man repairs a net on the quay, and the evening light turns the water orange as a ferry "
        "slowly leaves for the island across the bay, where a lighthouse keeper, watching from the cliffs above "
        "the old town, waves to the passengers gathered at the rail"
    ),
]  # the last one is longer than 76 word pieces: it checks the truncation
FRAMES, SIZE, LATENT = 8, 224, 56
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VIT_LARGE_IN21K = {  # google/vit-large-patch16-224-in21k config.json (the rest are transformers' ViTConfig defaults)
    "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02, "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16, "num_channels": 3,
    "qkv_bias": True,
}
HOW = {"dinov3": "torch.hub.load(<dinov3>, source='local', pretrained=False), as the official code"}
SEG_RELEASE = "trajtok_segmenter_random.pth"
VIT2_RELEASE = "trajvitv2_random.pth"
OUTPUTS = "official_outputs.pt"
FACTS = "official_facts.json"


# --------------------------------------------------------------------------------------------------------------
# official half
# --------------------------------------------------------------------------------------------------------------


#: Keys of the segmenter release (``vision_encoder.`` stripped) that the official eval driver has no module for.
DRIVER_UNUSED = ("patch_decoder_high_res.", "traj_seg_head_high_res.", "text_encoder.", "vision_proj.", "text_proj.",
                 "itm_head.", "temp")

def make_clip(seed: int):
    """A fixed (1, T, 3, 224, 224) clip at ImageNet-normalised scale: smooth random shapes that drift over time,
    plus pixel noise, in [0, 1] before normalisation."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 9, 9, generator=g)
    base = F.interpolate(coarse, size=(SIZE + 4 * FRAMES, SIZE + 4 * FRAMES), mode="bicubic", align_corners=False)
    frames = [base[..., 2 * t: 2 * t + SIZE, 4 * t: 4 * t + SIZE] for t in range(FRAMES)]
    clip = torch.stack(frames, dim=1) + 0.08 * torch.randn(1, FRAMES, 3, SIZE, SIZE, generator=g)
    clip = clip.clamp(0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    return ((clip - mean) / std).contiguous()


def official_pre_text(official: Path):
    """The official ``pre_text`` (training-time caption cleaning), compiled from its source: its module imports
    torchvision and imageio, which the side environment does not need otherwise."""
    import re

    path = official / "segmenter/trajtok_segmenter/data/collate.py"
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "pre_text")
    namespace = {"re": re}
    # exec of the official source, by design: the parity check runs the official caption cleaning as written.
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["pre_text"]


def setup_official(official: Path, dinov3: Path):
    """Import the official packages from the checkout and install the run-time patches listed in the module
    docstring. Returns the modules used."""
    sys.path[:0] = [str(official / "segmenter"), str(official / "trajvitv2")]
    os.environ["TRAJTOK_DINOV3_ROOT"] = str(dinov3)
    os.environ["TRAJTOK_DINOV3_WEIGHTS_DIR"] = str(dinov3)
    # transformers first, before the timm stand-in below, so that its package-availability checks are untouched
    for name in ("transformers", "transformers.models.resnet", "transformers.models.vit"):
        importlib.import_module(name)

    # patch 1: an empty timm while dinov3_convnext.py is imported
    had_timm = "timm" in sys.modules
    if not had_timm:
        stub = types.ModuleType("timm")
        stub.__spec__ = importlib.machinery.ModuleSpec("timm", None)
        sys.modules["timm"] = stub
    import trajtok_segmenter.model.backbones.dinov3_convnext as backbones

    if not had_timm:
        del sys.modules["timm"]

    # patch 2: never look for Meta's weight file; if the dinov3 repository's hubconf.py does not import here (it
    # also pulls in dinov3's detectors, segmentors, dino.txt ...), build the same ConvNeXt from its modules
    import torch

    init, hub_load = backbones.DINOResNetHierFeat.__init__, torch.hub.load

    def convnext_from_modules(repo, name, *args, source=None, pretrained=True, **kwargs):
        try:
            return hub_load(repo, name, *args, source=source, pretrained=pretrained, **kwargs)
        except ImportError as e:
            HOW["dinov3"] = f"hubconf.py failed ({type(e).__name__}: {e}); built from the dinov3 modules"
        sys.path.insert(0, str(repo))
        try:
            try:
                from dinov3.hub import backbones as hub_backbones

                return getattr(hub_backbones, name)(pretrained=False)
            except ImportError:
                from dinov3.models.convnext import ConvNeXt, convnext_sizes

                size = convnext_sizes[name.rsplit("_", 1)[-1]]
                model = ConvNeXt(in_chans=3, depths=size["depths"], dims=size["dims"], drop_path_rate=0,
                                 layer_scale_init_value=1e-6)
                model.init_weights()
                HOW["dinov3"] += " (models.convnext; hub.backbones did not import)"
                return model
        finally:
            sys.path.remove(str(repo))

    def dino_init(self, *args, load_pretrained=True, **kwargs):
        torch.hub.load = convnext_from_modules
        try:
            init(self, *args, load_pretrained=False, **kwargs)
        finally:
            torch.hub.load = hub_load

    backbones.DINOResNetHierFeat.__init__ = dino_init

    # patch 3: BERT from its config, random weights
    from trajtok_segmenter.text import xbert

    def bert_from_pretrained(cls, name, *args, config=None, output_loading_info=False, **kwargs):
        if name != "bert-base-uncased" or config is None:
            raise RuntimeError(f"unexpected from_pretrained({name!r}) in the official code")
        model = cls(config, **kwargs)
        info = {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
        return (model, info) if output_loading_info else model

    for cls in (xbert.BertModel, xbert.BertForMaskedLM):
        cls.from_pretrained = classmethod(bert_from_pretrained)

    # patch 4: the ViT-L in21k hub config without the hub
    from trajtok_segmenter.model import traj_transformer
    from transformers import ViTConfig

    class OfflineViTConfig(ViTConfig):
        @classmethod
        def from_pretrained(cls, name, *args, **kwargs):
            if name != "google/vit-large-patch16-224-in21k" or args or kwargs:
                raise RuntimeError(f"unexpected ViTConfig.from_pretrained({name!r})")
            return ViTConfig(**VIT_LARGE_IN21K)

    traj_transformer.ViTConfig = OfflineViTConfig

    from trajtok_segmenter.model import model_pretrain, segmenter
    from trajtok_segmenter.text.tokenization_bert import BertTokenizer

    return types.SimpleNamespace(model_pretrain=model_pretrain, segmenter=segmenter, xbert=xbert,
                                 BertTokenizer=BertTokenizer, backbones=backbones)


def load_configs(official: Path):
    """(segmenter config, TrajViT-v2 config) as the drivers read them (``yaml.safe_load`` + EasyDict), patched."""
    import yaml
    from easydict import EasyDict

    bert_config = str(official / "segmenter/configs/config_bert.json")
    seg = EasyDict(yaml.safe_load((official / "segmenter/configs/pretrain.yaml").read_text()))
    seg.bert_config = bert_config
    text = (official / "trajvitv2/configs/pretrain.yaml").read_text()
    try:
        yaml.safe_load(text)
        yaml_bug = False
    except yaml.YAMLError:
        yaml_bug = True
    if text.count("sav_train:['") != 1:
        raise RuntimeError("trajvitv2/configs/pretrain.yaml changed: the known 'sav_train:[' bug is not there")
    vit2 = EasyDict(yaml.safe_load(text.replace("sav_train:['", "sav_train: ['")))
    literal_bert_config = vit2.bert_config
    vit2.bert_config = bert_config
    return seg, vit2, {"trajvitv2_yaml_parses_unpatched": not yaml_bug,
                       "trajvitv2_bert_config_literal": literal_bert_config}


def randomize_constants(model, seed: int) -> list[str]:
    """Replace every parameter the init left constant (norm weights / biases, zero biases, layer scales,
    ``log_scale``) by random values of a sensible scale. ``rotary_emb.freqs`` (frozen, fixed by formula) stays."""
    import torch

    g = torch.Generator().manual_seed(seed)
    changed = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("rotary_emb.freqs") or p.numel() == 0:
                continue
            if p.numel() > 1 and bool((p != p.flatten()[0]).any()):
                continue  # already random
            value = float(p.flatten()[0])
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("log_scale"):
                new = torch.full(p.shape, 1.3) + 0.2 * noise  # softplus(1.3) + 1 = 2.54, away from log(16)
            elif name.endswith("gamma"):  # ConvNeXt layer scale, init 1e-6: make the blocks count
                new = 0.3 * (1 + 0.2 * noise)
            elif value == 1.0:
                new = 1 + 0.2 * noise
            elif value == 0.0:
                new = 0.05 * noise
            else:
                new = value * (1 + 0.2 * noise)
            p.copy_(new.to(p.dtype))
            changed.append(name)
    return changed


def release_dict(model):
    return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "meta": {"epoch": 0, "global_step": 0, "source_path": "random"}}


def save_release(model, path: Path) -> dict:
    import torch

    torch.save(release_dict(model), path)
    back = torch.load(path, map_location="cpu", weights_only=True)
    sd = back["model"]
    return {"file": str(path), "keys": len(sd), "numel": int(sum(v.numel() for v in sd.values())),
            "parameters": int(sum(p.numel() for p in model.parameters())), "meta": back["meta"],
            "weights_only_load": True}


def numel(sd: dict, prefix: str, exclude: tuple[str, ...] = ()) -> int:
    return int(sum(v.numel() for k, v in sd.items() if k.startswith(prefix) and not k.startswith(exclude)))


def run_official(args) -> int:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    official, out = Path(args.official).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    m = setup_official(official, Path(args.dinov3).resolve())
    seg_cfg, vit2_cfg, cfg_facts = load_configs(official)
    vocab = Path(args.vocab)
    vocab_file = vocab / "vocab.txt" if vocab.is_dir() else vocab
    tokenizer = m.BertTokenizer(vocab_file=str(vocab_file))  # patch 5 (do_lower_case=True, as bert-base-uncased)

    import hashlib
    import importlib.metadata as md

    facts: dict = {"versions": {p: md.version(p) for p in ("torch", "transformers", "rotary-embedding-torch",
                                                            "einops", "einops-exts", "easydict", "omegaconf")},
                   "threads": args.threads, "seed": args.seed, "config": cfg_facts,
                   "vocab": {"file": str(vocab_file), "entries": len(tokenizer.vocab),
                             "sha256": hashlib.sha256(vocab_file.read_bytes()).hexdigest()}}
    video = make_clip(args.seed)
    results: dict = {"video": video, "captions": list(CAPTIONS)}
    pre_text = official_pre_text(official)
    facts["captions_raw"] = list(CAPTIONS)
    facts["captions_pre_text"] = [pre_text(c) for c in CAPTIONS]

    # ---------------- the segmenter release ----------------
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    wrapper = m.model_pretrain.SegmentWrapper(config=seg_cfg, tokenizer=tokenizer).eval()
    facts["segmenter_build_s"] = round(time.perf_counter() - t0, 1)
    facts["segmenter_randomised"] = len(randomize_constants(wrapper, args.seed + 1))
    enc = wrapper.vision_encoder
    high_res = hasattr(enc, "patch_decoder_high_res")
    facts["segmenter_class"] = f"{type(wrapper).__name__}({type(enc).__name__}, high_res={high_res})"
    backbone_cls = type(enc.patch_encoder.backbone)
    facts["segmenter_backbone"] = f"{backbone_cls.__module__}.{backbone_cls.__name__}"
    facts["dinov3"] = {"repo": str(Path(args.dinov3).resolve()), "how": HOW["dinov3"],
                       "stand_in": "STAND-IN" in (Path(args.dinov3) / "hubconf.py").read_text()}
    info = save_release(wrapper, out / SEG_RELEASE)
    sd = torch.load(out / SEG_RELEASE, map_location="cpu", weights_only=True)["model"]
    info["vision_encoder_numel"] = numel(sd, "vision_encoder.")
    backbone = "vision_encoder.patch_encoder.backbone."
    info["backbone_numel"] = numel(sd, backbone, (backbone + "norms.",))  # norms.3 is norm, listed twice
    info["text_encoder_numel"] = numel(sd, "text_encoder.")
    facts["segmenter_release"] = info
    freqs = [v for k, v in sd.items() if k.endswith("rotary_emb.freqs")]
    formula = 1.0 / (10000 ** (torch.arange(0, 32, 2).float() / 32))
    facts["rotary_freqs_equal_formula"] = all(torch.equal(f, formula) for f in freqs)

    # re-load the file as the official eval drivers do (eval_davis.py / demo_image.py)
    cfg = seg_cfg
    driver = m.segmenter.SimpleSegmenter(config=cfg.traj_model, backbone_config=cfg.backbone,
                                         perceiver_config=cfg.perceiver, high_res=False).eval()
    stripped = {k.removeprefix("vision_encoder."): v for k, v in sd.items()}
    # What the driver (built with high_res=False) has no place for: the training-only high-res branch and the
    # pre-training wrapper's text tower, projections and temperature. Everything else must load strictly.
    unused = {k for k in stripped if k.startswith(DRIVER_UNUSED)}
    driver.load_state_dict({k: v for k, v in stripped.items() if k not in unused}, strict=True)
    facts["segmenter_driver_load"] = {"unused": len(unused), "unused_prefixes": sorted({k.split(".")[0] for k in unused})}
    del wrapper
    t0 = time.perf_counter()
    with torch.no_grad():
        logits, feats = driver(video, return_intermediate_feature=True)
    facts["segmenter_forward_s"] = round(time.perf_counter() - t0, 1)
    results.update({"seg/features": feats, "seg/logits": logits, "seg/labels": logits.argmax(-1)})
    top2 = logits.topk(2, dim=-1).values
    gap = top2[..., 0] - top2[..., 1]
    facts["segmenter_top1_top2_gap"] = {"min": float(gap.min()), "below_1e-5": int((gap < 1e-5).sum()),
                                        "below_1e-4": int((gap < 1e-4).sum()), "patches": gap.numel()}
    facts["segmenter_nonempty_slots"] = int(logits.argmax(-1).unique().numel())
    del driver

    # ---------------- TrajViT-v2 ----------------
    torch.manual_seed(args.seed + 10)
    t0 = time.perf_counter()
    model = m.model_pretrain.SegmentCLIP(config=vit2_cfg, tokenizer=tokenizer).eval()
    facts["trajvitv2_build_s"] = round(time.perf_counter() - t0, 1)
    facts["trajvitv2_randomised"] = len(randomize_constants(model, args.seed + 11))
    info = save_release(model, out / VIT2_RELEASE)
    sd = torch.load(out / VIT2_RELEASE, map_location="cpu", weights_only=True)["model"]
    tok_prefix = "vision_encoder.traj_tokenizer."
    info["breakdown_numel"] = {
        "segmenter": numel(sd, tok_prefix + "segmenter."),
        "trajectory_encoder": numel(sd, tok_prefix, (tok_prefix + "segmenter.",)),
        "transformer_encoder": numel(sd, "vision_encoder.vision_encoder.vit.encoder."),
        "transformer_cls": numel(sd, "vision_encoder.vision_encoder.cls_token"),
        "transformer_unused(embeddings,layernorm,pooler)": numel(sd, "vision_encoder.vision_encoder.vit.",
                                                                 ("vision_encoder.vision_encoder.vit.encoder.",)),
        "norm": numel(sd, "vision_encoder.norm."),
        "text_encoder": numel(sd, "text_encoder."),
        "projections": numel(sd, "vision_proj.") + numel(sd, "text_proj."),
        "itm_head+temp": numel(sd, "itm_head.") + numel(sd, "temp"),
    }
    info["vit_linear_shapes"] = {k: list(v.shape) for k, v in sd.items()
                                 if k.startswith("vision_encoder.vision_encoder.vit.encoder.layer.0.")
                                 and k.endswith("weight")}
    facts["trajvitv2_release"] = info
    vit = model.vision_encoder.vision_encoder.vit
    attn = vit.encoder.layer[0].attention
    facts["vit"] = {"attn_implementation": vit.config._attn_implementation, "attention_class": type(attn).__name__,
                    "hidden": vit.config.hidden_size, "layers": vit.config.num_hidden_layers,
                    "heads": vit.config.num_attention_heads, "ffn": vit.config.intermediate_size,
                    "eps": vit.config.layer_norm_eps, "act": vit.config.hidden_act,
                    "has_in_proj": not isinstance(model.vision_encoder.vision_encoder.in_proj, torch.nn.Identity),
                    "norm_eps": model.vision_encoder.norm.eps}

    captured = {}
    tokenizer_mod = model.vision_encoder.traj_tokenizer
    hooks = [tokenizer_mod.segmenter.register_forward_hook(lambda mod, i, o: captured.__setitem__("seg", o)),
             tokenizer_mod.register_forward_hook(lambda mod, i, o: captured.__setitem__("tok", o)),
             model.vision_encoder.register_forward_hook(lambda mod, i, o: captured.__setitem__("vit", o))]
    t0 = time.perf_counter()
    with torch.no_grad():
        dummy_mask = torch.zeros(1, FRAMES, SIZE // 4, SIZE // 4, dtype=torch.long)
        dummy_graph = torch.zeros(1, 128, FRAMES, dtype=torch.long)
        _, pooled = model.encode_image((video, dummy_mask, dummy_graph))
        video_emb = F.normalize(model.vision_proj(pooled[:, 0]), dim=-1)  # as eval_video_retrieval.encode_videos
    facts["trajvitv2_video_forward_s"] = round(time.perf_counter() - t0, 1)
    for h in hooks:
        h.remove()
    logits2, feats2 = captured["seg"]
    tokens, valid, _ = captured["tok"]
    labels2 = logits2.argmax(-1)
    results.update({"vit2/features": feats2, "vit2/logits": logits2, "vit2/labels": labels2,
                    "vit2/tokens": tokens, "vit2/valid": valid, "vit2/transformer_out": captured["vit"][0],
                    "vit2/video_embedding": video_emb})
    top2 = logits2.topk(2, dim=-1).values
    gap = top2[..., 0] - top2[..., 1]
    facts["trajvitv2_top1_top2_gap"] = {"min": float(gap.min()), "below_1e-5": int((gap < 1e-5).sum()),
                                        "below_1e-4": int((gap < 1e-4).sum()), "patches": gap.numel()}
    facts["biases"] = {k: k in sd for k in ("vision_proj.bias", "text_proj.bias",
                                            tok_prefix + "output_projector.bias",
                                            tok_prefix + "traj_feature_updater.layers.0.0.to_q.bias",
                                            tok_prefix + "traj_feature_updater.layers.0.1.gate.bias")}
    facts["trajvitv2_nonempty_slots"] = int(valid.sum())

    # fact: the trajectory encoder's mask (make_query_mask, as forward builds it)
    latent_mask, patch_mask = tokenizer_mod.make_query_mask(labels2, num_traj=128, num_latent_per_traj=1,
                                                            attend_other_latents=vit2_cfg.traj_model.attend_other_latents)
    own = labels2.unsqueeze(1) == torch.arange(128).view(1, 128, 1)
    facts["encoder_mask"] = {
        "blocked_means_true": True,
        "every_latent_sees_last_two_patches": bool((~patch_mask[:, :, -2:]).all()),
        "latents_seeing_last_patch_without_owning_it": int((~patch_mask[:, :, -1] & ~own[:, :, -1]).sum()),
        "patches_otherwise_exactly_own_label": bool(((~patch_mask[:, :, :-2]) == own[:, :, :-2]).all()),
        "latent_block_diagonal": bool(torch.equal(~latent_mask[0], torch.eye(128, dtype=torch.bool))),
        "last_two_patch_labels": labels2[0, -2:].tolist(),
    }

    # fact: the ViT key-padding mask under SDPA vs eager
    ct = model.vision_encoder.vision_encoder
    with torch.no_grad():
        masked, _ = ct(tokens, valid)
        unmasked, _ = ct(tokens, None)
        eager, _, _ = ct(tokens, valid, output_attention=True)
    norm = model.vision_encoder.norm
    facts["vit_key_mask"] = {
        "sdpa_masked_equals_unmasked_bitwise": bool(torch.equal(masked, unmasked)),
        "eager_masked_max_abs_diff_after_norm": float((norm(eager) - norm(masked)).abs().max()),
        "cls_eager_vs_sdpa_embedding_max_abs_diff": float(
            (F.normalize(model.vision_proj(norm(eager)[:, 0]), dim=-1) - video_emb).abs().max()),
    }
    results["vit2/video_embedding_eager_mask"] = F.normalize(model.vision_proj(norm(eager)[:, 0]), dim=-1)

    # text: eval_video_retrieval.encode_texts' tokenisation, encode_text, then get_sim's text_proj + L2
    bert = model.get_text_encoder()
    ran = []
    hooks = [layer.register_forward_hook(lambda mod, i, o, k=k: ran.append(k))
             for k, layer in enumerate(bert.encoder.layer)]
    tok = tokenizer(list(CAPTIONS), padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    t0 = time.perf_counter()
    with torch.no_grad():
        _, pooled_text = model.encode_text(tok)
        text_emb = F.normalize(model.text_proj(pooled_text), dim=-1)
    facts["trajvitv2_text_forward_s"] = round(time.perf_counter() - t0, 2)
    for h in hooks:
        h.remove()
    facts["bert"] = {"layers_run": ran, "layers_in_model": len(bert.encoder.layer),
                     "fusion_layer": bert.config.fusion_layer, "pooler": bert.pooler is not None}
    ids = tok["input_ids"]
    facts["tokens"] = {"length": list(ids.shape), "sep_present": bool((ids == tokenizer.sep_token_id).any()),
                       "first_is_cls": bool((ids[:, 0] == tokenizer.cls_token_id).all()),
                       "wordpieces_per_caption": (tok["attention_mask"].sum(1) - 1).tolist(),
                       "ids_pre_text": tokenizer(facts["captions_pre_text"], padding="max_length", truncation=True,
                                                 max_length=77)["input_ids"]}
    results.update({"text/input_ids": ids, "text/attention_mask": tok["attention_mask"], "text/cls": pooled_text,
                    "text/embedding": text_emb})
    try:  # the released driver's own text path, for the record
        model.text_proj(pooled_text[:, 0])
        facts["driver_text_path"] = "ran"
    except Exception as e:  # any failure of the released driver is a fact to record, not an error of this script
        facts["driver_text_path"] = f"fails: {type(e).__name__}: {e}"

    results["meta"] = {"seed": args.seed, "frames": FRAMES, "size": SIZE, "latent": LATENT,
                       "segmenter_release": SEG_RELEASE, "trajvitv2_release": VIT2_RELEASE}
    torch.save(results, out / OUTPUTS)
    torch.load(out / OUTPUTS, weights_only=True)
    (out / FACTS).write_text(json.dumps(facts, indent=2))
    print(json.dumps(facts, indent=2))
    print(f"wrote {out / OUTPUTS}, {out / FACTS}, {out / SEG_RELEASE}, {out / VIT2_RELEASE}")
    return 0


# --------------------------------------------------------------------------------------------------------------
# ours half
# --------------------------------------------------------------------------------------------------------------


class Table:
    def __init__(self, atol: float):
        self.atol, self.rows, self.failed = atol, [], []

    def add(self, stage: str, ours, ref) -> None:
        import torch

        ours, ref = ours.detach().float().cpu(), ref.detach().float().cpu()
        if ours.shape != ref.shape:
            self.rows.append((stage, f"shape {tuple(ours.shape)} vs {tuple(ref.shape)}", "", "FAIL"))
            self.failed.append(stage)
            return
        diff = float((ours - ref).abs().max()) if ours.numel() else 0.0
        ok = diff <= self.atol and bool(torch.isfinite(ours).all())
        self.rows.append((stage, f"{diff:.3g}", f"{float(ref.abs().max()):.3g}", "ok" if ok else "FAIL"))
        if not ok:
            self.failed.append(stage)

    def check(self, stage: str, ok: bool, text: str) -> None:
        self.rows.append((stage, text, "", "ok" if ok else "FAIL"))
        if not ok:
            self.failed.append(stage)

    def print(self) -> None:
        rows = [("stage", "max |diff|", "max |ref|", ""), *self.rows]
        widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
        for row in rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def convert(trajtok: str, src: Path, dst: Path, extra: list[str], force: bool) -> None:
    if dst.exists() and not force:
        print(f"[ours] {dst} exists, not re-converted (--reconvert to redo)")
        return
    cmd = [trajtok, "convert", str(src), str(dst), *extra]
    print("[ours] " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def per_frame_features(module, video):
    """The project's pixel encoder on each frame, flattened as the official F: (B, T*h*w, D), t-major."""
    from einops import rearrange

    b, t = video.shape[:2]
    maps = module.tokenizer.pixel_encoder(rearrange(video, "b t c h w -> (b t) c h w"))
    return rearrange(maps, "(b t) d h w -> b (t h w) d", b=b, t=t)


def compare_segmenter(module, ref: dict, prefix: str, table: Table, video) -> None:
    import torch

    with torch.no_grad():
        table.add(f"{prefix} pixel features F", per_frame_features(module, video), ref[f"{prefix}/features"])
        a = module.tokenizer.assign(video)
        table.add(f"{prefix} assignment patches", a.patches, ref[f"{prefix}/features"])
        table.add(f"{prefix} assignment logits", a.logits, ref[f"{prefix}/logits"])
        logits, _ = module.tokenizer.segmenter(ref[f"{prefix}/features"], a.grid)  # from the official features
        table.add(f"{prefix} logits (official input)", logits, ref[f"{prefix}/logits"])
    want = ref[f"{prefix}/labels"]
    same = (a.labels == want).float().mean().item()
    text = f"{100 * same:.4f} % equal"
    if same < 1.0:  # are the disagreements near-ties of the official logits?
        wrong = (a.labels != want).nonzero()
        top2 = ref[f"{prefix}/logits"].topk(2, dim=-1).values
        gaps = (top2[..., 0] - top2[..., 1])[wrong[:, 0], wrong[:, 1]]
        text += f" ({len(wrong)} patches differ; official top-1/top-2 gap there <= {float(gaps.max()):.2g})"
    table.check(f"{prefix} hard labels", same == 1.0, text)


def load_converted(args, release: str, extra: list[str]):
    from trajtok.module import TrajTokModule

    out = Path(args.out).resolve()
    ckpt = out / (Path(release).stem + ".ckpt")
    convert(args.trajtok, out / release, ckpt, extra, args.reconvert)
    return TrajTokModule.load_from_checkpoint(str(ckpt), map_location="cpu").eval()


def check_trajvitv2(module, ref: dict, table: Table) -> None:
    import torch

    from trajtok.tokens import TrajectoryTokens

    video, captions = ref["video"], list(ref["captions"])
    compare_segmenter(module, ref, "vit2", table, video)
    with torch.no_grad():
        tt = module.tokenizer(video)
        table.add("vit2 trajectory tokens (all 128)", tt.tokens, ref["vit2/tokens"])
        same = torch.equal(tt.valid.cpu(), ref["vit2/valid"])
        table.check("vit2 valid", same, f"{int(tt.valid.sum())} / {int(ref['vit2/valid'].sum())} valid, "
                    + ("equal" if same else "DIFFERENT"))
        a = module.tokenizer.assign(video)
        enc = module.tokenizer.encoder(ref["vit2/features"], ref["vit2/logits"], ref["vit2/labels"], a.grid, 1)
        table.add("vit2 tokens (official input)", enc, ref["vit2/tokens"])
        table.add("vit2 video embedding", module.head.encode_video(tt), ref["vit2/video_embedding"])
        official_tokens = TrajectoryTokens(tokens=ref["vit2/tokens"], valid=ref["vit2/valid"], logits=None,
                                           labels=tt.labels, grid=tt.grid)
        table.add("vit2 video embedding (official input)", module.head.encode_video(official_tokens),
                  ref["vit2/video_embedding"])
        text_encoder = module.head.text_encoder
        if hasattr(text_encoder, "tokenize"):
            ids = text_encoder.tokenize(captions)["input_ids"]
            want = ref["text/input_ids"]
            n = ids.shape[1]
            same = n <= want.shape[1] and torch.equal(ids, want[:, :n]) and not want[:, n:].any()
            table.check("text input ids", same, f"ours {tuple(ids.shape)} vs official {tuple(want.shape)} "
                        + ("(equal up to padding)" if same else "DIFFERENT"))
        table.add("text embeddings", module.head.encode_text(captions), ref["text/embedding"])


def run_ours(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    ref = torch.load(Path(args.out).resolve() / OUTPUTS, map_location="cpu", weights_only=True)
    extra = list(args.convert_args or [])
    if args.text_vocab:
        extra = ["--text_vocab", args.text_vocab, *extra]
    table = Table(args.atol)
    parts = [("segmenter release", SEG_RELEASE, lambda m: compare_segmenter(m, ref, "seg", table, ref["video"])),
             ("TrajViT-v2 release", VIT2_RELEASE, lambda m: check_trajvitv2(m, ref, table))]
    for name, release, check in parts:
        try:
            module = load_converted(args, release, extra)
            check(module)
            del module
        except Exception as e:  # reported as a failed row; the other release is still checked
            table.check(name, False, f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    table.print()
    if table.failed:
        print(f"FAILED: {', '.join(table.failed)} (atol {args.atol:g})")
        return 1
    print(f"all stages within {args.atol:g}; labels 100 % equal; valid equal")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="half", required=True)
    o = sub.add_parser("official", help="build the official models (side environment) and record their outputs")
    o.add_argument("--official", required=True, help="checkout of GitHub hellomuffin/trajtok")
    o.add_argument("--dinov3", required=True, help="checkout of facebookresearch/dinov3 (a folder with hubconf.py)")
    o.add_argument("--vocab", required=True, help="bert-base-uncased vocab.txt, or a folder holding it")
    o.add_argument("--out", default="/work/side/parity")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--threads", type=int, default=1)
    u = sub.add_parser("ours", help="convert the saved release files and compare this project's modules")
    u.add_argument("--out", default="/work/side/parity", help="the official half's --out")
    u.add_argument("--trajtok", default=str(Path(sys.executable).with_name("trajtok")), help="the trajtok CLI")
    u.add_argument("--text_vocab", default=None, help="passed to trajtok convert --text_vocab")
    u.add_argument("--convert_args", nargs=argparse.REMAINDER, help="further arguments for trajtok convert")
    u.add_argument("--reconvert", action="store_true", help="convert even if the .ckpt files exist")
    u.add_argument("--atol", type=float, default=1e-4)
    u.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    return run_official(args) if args.half == "official" else run_ours(args)


if __name__ == "__main__":
    sys.exit(main())
