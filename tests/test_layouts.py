"""The layout overlays of ``configs/layouts/``: each composes after a TrajTok config into the layout it documents."""

from __future__ import annotations

import pytest
import yaml
from helpers import CONFIGS

from trajtok.cli import TrajTokCLI
from trajtok.tokenizer import tokenizer_sizes

SEGMENTER = str(CONFIGS / "segmenter.yaml")


def composed_tokenizer(layout: str, capsys) -> dict:
    with pytest.raises(SystemExit) as stop:
        TrajTokCLI(args=["fit", "--config", SEGMENTER, "--config", str(CONFIGS / "layouts" / layout), "--print_config"])
    assert stop.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)["model"]["tokenizer"]


def test_lite_layout_on_the_cpu_configs_is_the_tiny_lite_preset(capsys, cli_in_tmp):
    tokenizer = composed_tokenizer("lite.yaml", capsys)
    assert tokenizer["class_path"] == "trajtok.tokenizer.TrajTok"
    preset = {k: v for k, v in tokenizer_sizes("trajtok", "tiny_lite").items() if k != "encoder"}
    assert {k: tokenizer["init_args"][k] for k in preset} == preset


def test_pretrained_encoder_layout_swaps_only_the_pixel_encoder(capsys, cli_in_tmp):
    tokenizer = composed_tokenizer("pretrained_encoder.yaml", capsys)
    assert tokenizer["init_args"]["pixel_encoder"]["class_path"] == "trajtok.tokenizer.EfficientNetLite"
    assert tokenizer["init_args"]["context_pool"] == 1 and tokenizer["init_args"]["recompute"] is False


@pytest.mark.parametrize("kind", ["vit3d", "tome", "rlt", "token_learner"])
def test_peer_configs_take_the_registered_sizes(kind):
    """configs/peers/ repeats in yaml the sizes the registry holds for the CPU scale: they must agree."""
    config = yaml.safe_load((CONFIGS / "peers" / f"{kind}.yaml").read_text())["model"]["tokenizer"]["init_args"]
    registered = tokenizer_sizes(kind, "tiny")
    assert {k: config[k] for k in registered} == registered
