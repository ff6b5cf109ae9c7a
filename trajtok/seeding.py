"""Reseeding at every epoch start, so that a run resumed from an end-of-epoch checkpoint replays the uninterrupted
run exactly.

The one owner of reseeding: ``EpochSeeding`` (a callback that ``TrajTokModule`` adds) reseeds the process and the
training loaders at every epoch start from ``datamodules.seeding.epoch_seeds``; datamodules build their training
loaders seeded from the same seeds (``datamodules.seeding.loader_generator``). A Lightning callback over the
datamodules' loaders, this module sits at the top layer.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from datamodules.seeding import epoch_seeds


def dataloaders(loaders: Any) -> list[DataLoader]:
    """The DataLoaders in a loader, or in a list / tuple / dict of them."""
    if isinstance(loaders, DataLoader):
        return [loaders]
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        return [dl for item in loaders for dl in dataloaders(item)]
    return []


class EpochSeeding(L.Callback):
    """At the start of every training epoch, reseed torch, numpy and ``random``, and the training loaders'
    generators, from ``(seed, epoch, global rank)`` when a global seed is set (``seed_everything``).

    An epoch's random draws (shuffle order, augmentations in the main process, dropout) are then a function of
    the epoch, not of the history of the process. The loader's generator draws the seed of each new loader
    iterator (and of its worker processes), which would otherwise come from the global stream: an uninterrupted
    run makes epoch e's iterator after this reseed, a resumed one before it, and the shuffle order that follows
    would differ by that one draw.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The first epoch of a run, fresh or resumed (Lightning calls no on_train_epoch_start for an epoch it
        # resumes in the middle).
        self._seed(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._seed(trainer)

    @staticmethod
    def _seed(trainer: L.Trainer) -> None:
        words = epoch_seeds(trainer.current_epoch, trainer.global_rank)
        if words is None:
            return
        torch.manual_seed(words[0])
        np.random.seed(words[1])
        random.seed(words[2])
        for loader in dataloaders(trainer.train_dataloader):
            # Re-seeded in place: the default RandomSampler holds this same generator object.
            if loader.generator is None:
                loader.generator = torch.Generator()
            loader.generator.manual_seed(words[3])
