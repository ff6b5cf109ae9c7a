"""Pixel encoders: the pretrained EfficientNet-Lite0 pyramid (ImageNet weights from its package, offline)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import MSRVTT24, needs_msrvtt24

from datamodules.transforms import eval_clip_transform
from datamodules.video import read_clip
from trajtok.tokenizer import EfficientNetLite, create_tokenizer
from trajtok.tokenizer.pixel_encoder import efficientnet_lite0

SUIT, WINDSOR_TIE = 834, 906  # ImageNet classes


def frames_of(caption: str, count: int = 3) -> torch.Tensor:
    rows = [json.loads(line) for line in (MSRVTT24 / "captions.jsonl").read_text().splitlines()]
    video = next(r["video"] for r in rows if r["caption"] == caption)
    return eval_clip_transform(read_clip(str(MSRVTT24 / video), count), 224)[0]


@needs_msrvtt24
def test_lite0_weights_are_imagenet_trained():
    """A man in a suit giving a talk is classified as 'suit' / 'Windsor tie' by the packaged weights, and not
    by the same architecture with random weights."""
    torch.manual_seed(0)
    frames = frames_of("man give talk")
    with torch.no_grad():
        probs = efficientnet_lite0().eval()(frames).softmax(-1).mean(0)
        random = efficientnet_lite0(pretrained=False).eval()(frames).softmax(-1).mean(0)
    assert int(probs.argmax()) in (SUIT, WINDSOR_TIE)
    assert float(probs[SUIT] + probs[WINDSOR_TIE]) > 0.3
    assert float(random[SUIT] + random[WINDSOR_TIE]) < 0.05


@pytest.mark.parametrize("pixels", [64, 224])
def test_pyramid_shape_and_strides(pixels):
    encoder = EfficientNetLite(out_dim=96)
    assert encoder(torch.randn(2, 3, pixels, pixels)).shape == (2, 96, pixels // 4, pixels // 4)
    coarse = EfficientNetLite(out_dim=96, strides=(16, 32))
    assert coarse(torch.randn(1, 3, pixels, pixels)).shape == (1, 96, pixels // 4, pixels // 4)
    assert len(coarse.backbone) < len(encoder.backbone) + 1
    with pytest.raises(ValueError, match="strides"):
        EfficientNetLite(strides=(2,))


def test_frozen_backbone_gets_no_gradient_and_stays_out_of_checkpoints():
    encoder = EfficientNetLite(out_dim=32, frozen=True)
    encoder(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is None for p in encoder.backbone.parameters())
    assert all(p.grad is not None for p in encoder.projections.parameters())
    state = encoder.state_dict()
    assert not any(k.startswith("backbone.") for k in state) and "projections.0.weight" in state
    again = EfficientNetLite(out_dim=32, frozen=True)
    again.load_state_dict(state)  # the backbone comes back from the package's weights
    assert torch.equal(again.backbone[1]._depthwise_conv.weight, encoder.backbone[1]._depthwise_conv.weight)


def imagenet_features(frames: torch.Tensor) -> list[torch.Tensor]:
    """The package's own EfficientNet-Lite0 (batch norms in place, eval mode): each block's output."""
    model = efficientnet_lite0().eval()
    x, outputs = model._swish(model._bn0(model._conv_stem(frames))), []
    for block in model._blocks:
        x = block(x)
        outputs.append(x)
    return outputs


def test_folded_batch_norms_compute_the_imagenet_network():
    """Batch norms are folded into the convolutions (and 'same' padding into stride-1 convolutions): every block
    still computes what the package's network computes, in training mode too (statistics never move)."""
    torch.manual_seed(0)
    frames = torch.randn(2, 3, 64, 48)
    encoder = EfficientNetLite(out_dim=32).train()
    with torch.no_grad():
        reference, x = imagenet_features(frames), frames
        for index, layer in enumerate(encoder.backbone):
            x = layer(x)
            if index:
                torch.testing.assert_close(x, reference[index - 1], atol=2e-4, rtol=1e-3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())


def test_fine_tuned_backbone_learns():
    encoder = EfficientNetLite(out_dim=32).train()
    encoder(torch.randn(4, 3, 64, 64)).sum().backward()
    assert encoder.backbone[0][0].weight.grad is not None and encoder.backbone[5]._project_conv.bias.grad is not None
    assert any(k.startswith("backbone.") for k in encoder.state_dict())


def test_trajtok_on_the_pretrained_encoder():
    model = create_tokenizer("tiny", pixel_encoder=EfficientNetLite(out_dim=128, frozen=True))
    out = model(torch.randn(2, 4, 3, 64, 64))
    assert out.tokens.shape[-1] == 128 and out.num_valid.min() >= 1
