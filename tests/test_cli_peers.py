"""Each peer config composes with TrajViT2's and trains, validates and tests through the real entry point, in this
process (``in_process``; tests/test_cli.py runs the command in child processes)."""

from __future__ import annotations

import logging

import pytest
from helpers import CONFIGS, SMALL_DATA

PEERS = sorted((CONFIGS / "peers").glob("*.yaml"))


def test_there_is_a_config_per_peer():
    assert {p.stem for p in PEERS} == {"vit3d", "tome", "rlt", "token_learner"}


@pytest.mark.slow
@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.stem)
def test_peer_fits_and_tests_in_place_of_trajtok(peer, in_process, caplog):
    configs = ["--config", str(CONFIGS / "clip.yaml"), "--config", str(peer)]
    in_process(["fit", *configs, "--trainer.max_steps=2", "--trainer.max_epochs=1", "--trainer.limit_val_batches=1",
                *SMALL_DATA])
    checkpoint = f"runs/clip+peers_{peer.stem}/checkpoints/last.ckpt"  # its own run, beside runs/clip
    with caplog.at_level(logging.INFO):  # the table is logged at info level (rank_zero_info)
        in_process(["test", *configs, *SMALL_DATA, f"--ckpt_path={checkpoint}"])
    output = caplog.text
    assert "Retrieval (test)" in output and "t2v" in output and "v2t" in output
