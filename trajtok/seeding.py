"""Per-epoch seeds, so that a run resumed from an end-of-epoch checkpoint replays the uninterrupted run exactly."""

from __future__ import annotations

import os

import numpy as np


def epoch_seeds(epoch: int, rank: int) -> list[int] | None:
    """Four independent seeds for ``(global seed, epoch, rank)`` (torch, numpy, ``random``, the training loader's
    generator), or None when no global seed was set (``seed_everything``: runs stay random then).

    Shared by the module, which reseeds at every epoch start, and the datamodules, which seed a training loader's
    generator when they build it: Lightning creates the iterator of a run's first epoch (fresh or resumed) as it
    builds the loader, before any epoch hook, and that iterator draws the worker seed and the shuffle seed from
    the loader's generator at once.
    """
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is None:
        return None
    return [int(w) for w in np.random.SeedSequence([int(seed), epoch, rank]).generate_state(4)]
