"""The tiny models and the quiet trainer that many tests build; not collected. Each is a function with keyword
overrides (``tiny_tokenizer(num_slots=4)``, ``quiet_trainer(tmp_path, max_steps=3)``), importable with
``from builders import ...`` and also a factory fixture of the same name (``tests/conftest.py``).

The builders create their parts in the order of the expressions they replace (``TrajTok(..., pixel_encoder=
ConvPyramid(...))`` builds the pyramid first; ``TrajTokModule(tokenizer, ClipHead(...))`` the tokenizer before the
head), so under one seed they give the same weights as those expressions did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from heads import ClipHead
from trajtok.module import TrajTokModule
from trajtok.tokenizer import ConvPyramid, TrajTok

#: The tiny tokenizer's sizes: what ``tiny_tokenizer`` passes unless overridden.
TINY_TOKENIZER = {"dim": 32, "num_slots": 8, "heads": 2, "head_dim": 16, "assign_dim": 16}
#: The tiny contrastive head's sizes (``tiny_clip_head``).
TINY_CLIP_HEAD = {"width": 32, "depth": 1, "heads": 2, "embed_dim": 16}
#: What makes a trainer quiet: on CPU, no logger, checkpoints, progress bar or model summary.
QUIET_TRAINER = {"accelerator": "cpu", "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                 "enable_model_summary": False}


def tiny_tokenizer(*, seed: int | None = None, widths: tuple[int, ...] = (16, 32),
                   depths: tuple[int, ...] | None = None, **overrides: Any) -> TrajTok:
    """A ``TrajTok`` of ``TINY_TOKENIZER``'s sizes (dim 32, 8 slots, 2 heads of 16, assignment dim 16) on a
    ``ConvPyramid`` of ``widths`` (one block a stage unless ``depths``) out to ``dim``; any other ``TrajTok`` argument,
    ``pixel_encoder`` included, overrides. ``seed``: ``torch.manual_seed(seed)`` first."""
    if seed is not None:
        torch.manual_seed(seed)
    kwargs = {**TINY_TOKENIZER, **overrides}
    if "pixel_encoder" not in kwargs:
        kwargs["pixel_encoder"] = ConvPyramid(out_dim=kwargs["dim"], widths=widths,
                                              depths=(1,) * len(widths) if depths is None else depths)
    return TrajTok(**kwargs)


def tiny_clip_head(**overrides: Any) -> ClipHead:
    """A ``ClipHead`` of ``TINY_CLIP_HEAD``'s sizes (width 32, one layer, 2 heads, 16-d embeddings) for a tokenizer
    of dim 32 (the text tower is MiniLM, as by default); ``ClipHead`` arguments override."""
    return ClipHead(**{**TINY_CLIP_HEAD, **overrides})


def tiny_module(tokenizer: nn.Module | None = None, head: nn.Module | None = None, *, seed: int | None = None,
                **module_args: Any) -> TrajTokModule:
    """``TrajTokModule(tokenizer, head, **module_args)``: by default ``tiny_tokenizer()`` and then
    ``tiny_clip_head()``. ``seed``: ``torch.manual_seed(seed)`` before either is built."""
    if seed is not None:
        torch.manual_seed(seed)
    tokenizer = tiny_tokenizer() if tokenizer is None else tokenizer
    return TrajTokModule(tokenizer, tiny_clip_head() if head is None else head, **module_args)


def quiet_trainer(root: Path | str | None = None, **overrides: Any) -> L.Trainer:
    """An ``L.Trainer`` of ``QUIET_TRAINER`` (CPU; no logger, checkpoints, progress bar or model summary) whose
    ``default_root_dir`` is ``root`` (the working folder if None); any ``L.Trainer`` argument overrides, e.g.
    ``enable_checkpointing=True`` for a test that reads the checkpoint."""
    kwargs = dict(QUIET_TRAINER) if root is None else {**QUIET_TRAINER, "default_root_dir": root}
    return L.Trainer(**{**kwargs, **overrides})
