"""The ``trajtok`` command: Lightning's CLI over ``TrajTokModule`` and any LightningDataModule.

``trajtok fit|validate|test|predict --config configs/clip.yaml``; ``--print_config`` shows the resolved
config. Unknown keys and ill-typed values are rejected by jsonargparse before anything is built or trained.
"""

from __future__ import annotations

import os
import sys

import lightning as L
from lightning.pytorch.cli import LightningCLI

from trajtok.module import TrajTokModule


class TrajTokCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, **kwargs):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})  # re-runs into one folder must not fail
        kwargs.setdefault("auto_configure_optimizers", False)  # the module owns AdamW + warm-up cosine
        super().__init__(
            TrajTokModule,
            L.LightningDataModule,
            subclass_mode_data=True,
            args=args,
            **kwargs,
        )


def main(args: list[str] | None = None) -> None:
    # Hub downloads are never attempted at run time; weights load from local paths or the cache.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    TrajTokCLI(args=args if args is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
