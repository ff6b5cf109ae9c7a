"""Per-epoch seeds, so that a run resumed from an end-of-epoch checkpoint replays the uninterrupted run exactly.

The seeds of an epoch are a function of ``(global seed, epoch, rank)`` alone (``epoch_seeds``). Datamodules give a
training loader ``loader_generator(trainer)`` when they build it; ``trajtok.seeding.EpochSeeding`` (a callback that
``TrajTokModule`` adds) reseeds the process and the training loaders from the same seeds at every epoch start. The
seeds live here, with the data, so that the data layer needs nothing from the model's side for them.
"""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import torch


def epoch_seeds(epoch: int, rank: int) -> list[int] | None:
    """Four independent seeds for ``(global seed, epoch, rank)`` (torch, numpy, ``random``, the training loader's
    generator), or None when no global seed was set (``seed_everything``: runs stay random then)."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is None:
        return None
    return [int(w) for w in np.random.SeedSequence([int(seed), epoch, rank]).generate_state(4)]


def loader_generator(trainer: L.Trainer | None) -> torch.Generator | None:
    """The generator for a training loader built now: seeded for the trainer's epoch and rank when a seed is set,
    None (the global stream) otherwise.

    Lightning creates the iterator of a run's first epoch (fresh or resumed) as it builds the loader, before any
    epoch hook, and that iterator draws the worker seed and the shuffle seed from the loader's generator at once:
    so the loader must be built seeded; ``trajtok.seeding.EpochSeeding`` reseeds it for the epochs after.
    """
    words = epoch_seeds(trainer.current_epoch, trainer.global_rank) if trainer is not None else None
    return torch.Generator().manual_seed(words[3]) if words is not None else None
