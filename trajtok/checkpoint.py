"""Warm-starting a tokenizer from the checkpoint of another run (e.g. the segmenter pre-training)."""

from __future__ import annotations

import os

import torch
from torch import nn

PREFIX = "tokenizer."


def tokenizer_state(path: str, prefix: str = PREFIX) -> dict[str, torch.Tensor]:
    """The ``prefix``-ed tensors of a Lightning checkpoint's ``state_dict``, prefix stripped.

    Read with ``weights_only=True``: a checkpoint is data, and unpickling arbitrary objects from a file named in
    a config would run whatever code it holds.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tokenizer checkpoint {path!r} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
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


def load_checkpoint(module: nn.Module, path: str) -> None:
    """Load the whole ``state_dict`` of the Lightning checkpoint at ``path`` into ``module``, strictly.

    For using a trained run outside the trainer (``trajtok visualize``). Read with ``weights_only=True`` like
    ``tokenizer_state``. Raises ``FileNotFoundError`` / ``ValueError`` naming the file when it is missing, not a
    Lightning checkpoint, or does not fit the module (missing, unexpected or mis-shaped keys).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    try:
        module.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: the checkpoint does not fit the model built from the config: {e}") from e
