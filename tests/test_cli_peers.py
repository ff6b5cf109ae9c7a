"""Each peer config composes with TrajViT2's and trains, validates and tests through the real entry point."""

from __future__ import annotations

import pytest
from helpers import CONFIGS, SMALL_DATA, run_trajtok

PEERS = sorted((CONFIGS / "peers").glob("*.yaml"))


def test_there_is_a_config_per_peer():
    assert {p.stem for p in PEERS} == {"vit3d", "tome", "rlt", "token_learner"}



@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.stem)
def test_peer_fits_and_tests_in_place_of_trajtok(peer, tmp_path, cache):
    configs = ["--config", str(CONFIGS / "clip.yaml"), "--config", str(peer)]
    short = ["--trainer.max_steps=2", "--trainer.max_epochs=1", "--trainer.limit_val_batches=1", *SMALL_DATA]
    fit = run_trajtok(["fit", *configs, *short], tmp_path, cache)
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoint = tmp_path / f"runs/clip+peers_{peer.stem}/checkpoints/last.ckpt"  # its own run, beside runs/clip
    test = run_trajtok(["test", *configs, *SMALL_DATA, f"--ckpt_path={checkpoint}"], tmp_path, cache)
    assert test.returncode == 0, test.stderr[-3000:]
    output = test.stdout + test.stderr
    assert "Retrieval (test)" in output and "t2v" in output and "v2t" in output
