"""Reading Lightning checkpoints as data: whole models (``trajtok visualize``, export) and warm starts of a
tokenizer from another run (e.g. the segmenter pre-training); and writing them whole (``AtomicCheckpointIO``)."""

from __future__ import annotations

import contextlib
import os
import pickle
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from trajtok.errors import CheckpointError
from trajtok.files import atomic_write, partial_files

PREFIX = "tokenizer."


def weights_only_reason(message: str) -> str:
    """The line of torch's weights-only refusal that says what was refused (``Unsupported global: ...``)."""
    for line in message.splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].split(". Please use")[0].strip()
    return message.strip().splitlines()[0] if message.strip() else "refused"


def read_checkpoint(path: str | os.PathLike, weights_only: bool = True) -> dict[str, Any]:
    """``torch.load`` of a checkpoint file, its refusals as ``CheckpointError`` naming the file and what to do."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    with checkpoint_errors(path):
        return torch.load(path, map_location="cpu", weights_only=weights_only)


@contextlib.contextmanager
def checkpoint_errors(path: str) -> Iterator[None]:
    """torch's refusals and read errors of the checkpoint at ``path`` as a ``CheckpointError`` saying what to do."""
    try:
        yield
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: a weights-only load refuses it ({weights_only_reason(str(error))}). It holds objects other "
            "than tensors and plain data; if you trust this file, pass --weights_only=false") from error
    except (RuntimeError, EOFError) as error:
        if "zip archive" not in str(error) and not isinstance(error, EOFError):
            raise
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated, or not a torch file): {error}") from error


def checkpoint_state(path: str | os.PathLike, checkpoint: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of the Lightning checkpoint at ``path`` (already read: ``checkpoint``).

    Read with ``weights_only=True``: a checkpoint is data, and unpickling arbitrary objects from a file named in
    a config would run whatever code it holds.
    """
    path = str(path)
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
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


def tokenizer_state(path: str, prefix: str = PREFIX, checkpoint: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The ``prefix``-ed tensors of a Lightning checkpoint's ``state_dict``, prefix stripped."""
    state = {k[len(prefix):]: v for k, v in checkpoint_state(path, checkpoint).items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"{path}: no {prefix}* weights in its state_dict")
    return state


def load_tokenizer_weights(tokenizer: nn.Module, path: str, prefix: str = PREFIX) -> None:
    """Copy the tokenizer weights of the Lightning checkpoint at ``path`` into ``tokenizer``, strictly.

    Every parameter and buffer must be present with the same shape and nothing extra may be left over: a warm
    start that silently keeps half the modules at random init would make a pre-training comparison meaningless.
    Raises ``ValueError`` naming the file and each missing, unexpected or mis-shaped key.

    A released TrajTok file (``trajtok.release``) is mapped strictly onto the tokenizer, which must then be the
    released layout (``configs/official``); a released segmenter holds no trajectory encoder, whose weights then
    keep their initialisation (with a warning).
    """
    checkpoint = read_checkpoint(path)
    own = tokenizer.state_dict()
    if _is_release(checkpoint):
        state = _release_tokenizer_state(checkpoint, path, tokenizer, prefix)
    else:
        state = tokenizer_state(path, prefix, checkpoint)
        initialised = (checkpoint.get("release") or {}).get("initialised") if isinstance(checkpoint, dict) else None
        if initialised and prefix == PREFIX:
            warnings.warn(f"{path}: converted from a released segmenter, which holds no trajectory encoder: its "
                          f"{len(initialised)} tensors here are an initialisation", UserWarning, stacklevel=2)
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(own.keys() & state.keys())
        if state[k].shape != own[k].shape
    ]
    # Loaded through the modules' own load hooks, which read earlier layouts of their weights; whatever still
    # does not fit is an error (raised before the tokenizer is used, so a partial load is never trained on).
    result = tokenizer.load_state_dict(state, strict=False) if not mismatched else None
    if result is not None:
        missing, unexpected = sorted(result.missing_keys), sorted(result.unexpected_keys)
    else:
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    if missing or unexpected or mismatched:
        problems = [
            f"{label} ({len(keys)}): {', '.join(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
            if keys
        ]
        raise ValueError(f"{path}: tokenizer weights do not fit this tokenizer; " + "; ".join(problems))



def _is_release(checkpoint: Any) -> bool:
    from trajtok.release import is_release

    return is_release(checkpoint)


def _release_tokenizer_state(checkpoint: dict[str, Any], path: str, module: nn.Module,
                             prefix: str = PREFIX) -> dict[str, torch.Tensor]:
    """A release file's tensors of ``module``, the part under ``prefix`` (``tokenizer.``: the whole tokenizer, whose
    trajectory encoder keeps its own weights when the file has none; ``tokenizer.segmenter.``: that part alone),
    after checking that ``module`` computes the released function."""
    from trajtok.release import (
        SEGMENTER_ONLY_INITIALISED,
        check_released_tokenizer,
        map_release,
        read_layout,
        release_state,
    )

    release = release_state(checkpoint, path)
    layout = read_layout(release, path)
    state = map_release(release, layout, path, part="tokenizer")
    if not prefix.startswith(PREFIX):
        raise ValueError(f"{path}: a released TrajTok file holds no {prefix}* weights")
    part = prefix[len(PREFIX):]
    check_released_tokenizer(module, layout, path, part)
    if part:
        return {k[len(part):]: v for k, v in state.items() if k.startswith(part)}
    own = module.state_dict()
    if layout.kind == "segmenter":
        initialised = [k for k in own if k.startswith(tuple(p[len(PREFIX):] for p in SEGMENTER_ONLY_INITIALISED))
                       and k not in state]
        state.update({k: own[k] for k in initialised})
        if initialised:
            warnings.warn(f"{path}: a released segmenter holds no trajectory encoder: its {len(initialised)} tensors "
                          "keep the tokenizer's initialisation", UserWarning, stacklevel=3)
    return state


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole or not at all (``trajtok.files.atomic_write``: a hidden temporary file beside the
    target, flushed to disk, then renamed over it). A job killed while writing leaves the previous ``last.ckpt`` in
    place, and resuming from it works; the temporary such a job leaves behind is removed by the next write of that
    checkpoint (one process writes checkpoints, so no other write of it can be in progress).

    Lightning's default writes through an fsspec transaction: a temporary file in ``$TMPDIR``, moved into place
    at the end. Where ``$TMPDIR`` is another file system than the run's folder (a node's local ``/tmp`` and runs
    on a network share, the usual cluster layout), that move is a copy into the target file itself, and a kill
    during it leaves a truncated checkpoint where the good one was. Remote paths (``s3://`` ...) keep fsspec's
    own handling.
    """

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        with checkpoint_errors(str(path)):
            if map_location is None:
                return super().load_checkpoint(path, weights_only=weights_only)
            return super().load_checkpoint(path, map_location, weights_only)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        path = os.fspath(path)
        if storage_options is not None or "://" in path:
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(path, "wb") as f:
            torch.save(checkpoint, f)
        for stale in partial_files(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)  # left by a process killed while writing this file
