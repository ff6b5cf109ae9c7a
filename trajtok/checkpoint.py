"""Reading Lightning checkpoints as data: whole models (``trajtok visualize``, export) and warm starts of a
tokenizer from another run (e.g. the segmenter pre-training)."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

PREFIX = "tokenizer."


def checkpoint_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of the Lightning checkpoint at ``path``.

    Read with ``weights_only=True``: a checkpoint is data, and unpickling arbitrary objects from a file named in
    a config would run whatever code it holds.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return checkpoint["state_dict"]


def load_state_strictly(module: nn.Module, state: dict[str, Any], source: str) -> None:
    """``module.load_state_dict(state, strict=True)``, its error re-raised as ``ValueError`` naming ``source``.

    Keys that ``keep_out_of_state_dict`` leaves out are filled by the module itself (its load pre-hook) and so
    count as present."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{source}: the weights do not fit the {type(module).__name__} built from the config: "
                         f"{error}") from error


def load_checkpoint(module: nn.Module, path: str) -> None:
    """Load the whole ``state_dict`` of the Lightning checkpoint at ``path`` into ``module``, strictly."""
    load_state_strictly(module, checkpoint_state(path), source=str(path))


def tokenizer_state(path: str, prefix: str = PREFIX) -> dict[str, torch.Tensor]:
    """The ``prefix``-ed tensors of a Lightning checkpoint's ``state_dict``, prefix stripped."""
    state = {k[len(prefix):]: v for k, v in checkpoint_state(path).items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"{path}: no {prefix}* weights in its state_dict")
    return state


def load_tokenizer_weights(tokenizer: nn.Module, path: str, prefix: str = PREFIX) -> None:
    """Copy the tokenizer weights of the Lightning checkpoint at ``path`` into ``tokenizer``, strictly.

    Every parameter and buffer must be present with the same shape and nothing extra may be left over: a warm
    start that silently keeps half the modules at random init would make a pre-training comparison meaningless.
    Raises ``ValueError`` naming the file and each missing, unexpected or mis-shaped key.
    """
    state = tokenizer_state(path, prefix)
    own = tokenizer.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(own.keys() & state.keys())
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        problems = [
            f"{label} ({len(keys)}): {', '.join(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
            if keys
        ]
        raise ValueError(f"{path}: tokenizer weights do not fit this tokenizer; " + "; ".join(problems))
    tokenizer.load_state_dict(state, strict=True)

