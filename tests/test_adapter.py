"""TrajAdapter: frozen transformers features, pooled by TrajTok's masks, classified by the probe head."""

from __future__ import annotations

import pytest
import torch
from builders import tiny_tokenizer
from transformers import (
    Dinov2Config,
    Dinov2Model,
    SiglipConfig,
    SiglipModel,
    VideoMAEConfig,
    VideoMAEModel,
    VJEPA2Config,
    VJEPA2Model,
)

from heads import ProbeHead
from heads.probe import masked_mean
from trajtok.module import TrajTokModule
from trajtok.tokenizer import (
    FeaturePatches,
    FeatureTrajTok,
    FrozenVideoFeatures,
)
from trajtok.tokenizer.adapter import resize_assignment
from trajtok.tokenizer.features import IMAGENET_MEAN, IMAGENET_STD

SMALL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


def videomae() -> VideoMAEModel:
    return VideoMAEModel(VideoMAEConfig(**SMALL, image_size=32, patch_size=8, num_frames=4, tubelet_size=2))


def vjepa2() -> VJEPA2Model:
    config = VJEPA2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, patch_size=8, crop_size=32,
                          frames_per_clip=4, pred_hidden_size=16, pred_num_hidden_layers=1, pred_num_attention_heads=2)
    return VJEPA2Model(config)


def siglip() -> SiglipModel:  # the two-tower model: the vision tower must be found inside it
    text = dict(SMALL, vocab_size=64, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return SiglipModel(SiglipConfig(vision_config=dict(SMALL, image_size=32, patch_size=8), text_config=text))


def dinov2() -> Dinov2Model:
    return Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2,
                                    image_size=32, patch_size=8))


def clip_video(batch: int = 2, frames: int = 4, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, frames, 3, size, size)


def reference(model, video: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """What the model itself says: its last hidden state for pixels normalised its own way."""
    raw = video * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    pixels = (raw - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    with torch.no_grad():
        if isinstance(model, VideoMAEModel):
            return model(pixel_values=pixels).last_hidden_state
        if isinstance(model, VJEPA2Model):
            return model(pixel_values_videos=pixels, skip_predictor=True).last_hidden_state
        vision = model.vision_model if isinstance(model, SiglipModel) else model
        return vision(pixel_values=pixels.flatten(0, 1)).last_hidden_state


@pytest.mark.parametrize(
    "build, grid, prefix, mean",
    [
        (videomae, (2, 4, 4), 0, IMAGENET_MEAN),
        (vjepa2, (2, 4, 4), 0, IMAGENET_MEAN),
        (siglip, (4, 4, 4), 0, (0.5, 0.5, 0.5)),
        (dinov2, (4, 4, 4), 1, IMAGENET_MEAN),  # the CLS token is dropped
    ],
    ids=["videomae", "vjepa2", "siglip", "dinov2"],
)
def test_features_from_a_saved_model_match_the_model_itself(build, grid, prefix, mean, tmp_path):
    torch.manual_seed(0)
    model = build().eval()
    model.save_pretrained(tmp_path / "model")
    std = (0.5, 0.5, 0.5) if mean != IMAGENET_MEAN else IMAGENET_STD
    features = FrozenVideoFeatures(str(tmp_path / "model"), mean=mean, std=std)
    video = clip_video()
    out = features(video)
    assert out.shape == (2, *grid, 32) and features.grid(4, 32, 32) == grid
    expected = reference(model, video, mean, std)
    per_clip = expected.reshape(2, -1, 32) if expected.shape[0] == 2 else expected.reshape(2, 4, -1, 32)
    if prefix:
        per_clip = per_clip[:, :, prefix:]
    assert torch.allclose(out, per_clip.reshape(out.shape), atol=1e-5)


def test_features_are_frozen_and_pretrained_weights_stay_out_of_the_state_dict(tmp_path):
    torch.manual_seed(0)
    videomae().save_pretrained(tmp_path / "model")
    features = FrozenVideoFeatures(str(tmp_path / "model"))
    features.train()
    assert not features.model.training and not any(p.requires_grad for p in features.parameters())
    assert not features.state_dict()  # reloaded from the path, not stored in every checkpoint
    again = FrozenVideoFeatures(str(tmp_path / "model"))
    again.load_state_dict({}, strict=True)  # the missing weights are filled from the loaded model

    built = FrozenVideoFeatures("videomae", pretrained=False, seed=3, config_overrides=dict(SMALL, image_size=32,
                                patch_size=8, num_frames=4))
    assert built.state_dict()  # weights from a config are kept: they cannot be reloaded
    same = FrozenVideoFeatures("videomae", pretrained=False, seed=3, config_overrides=dict(SMALL, image_size=32,
                               patch_size=8, num_frames=4))
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), same.state_dict().values()))


def test_a_checkpoint_without_the_weights_is_refused(tmp_path):
    torch.manual_seed(0)
    VideoMAEModel(VideoMAEConfig(**SMALL, image_size=32, patch_size=8, num_frames=4)).save_pretrained(tmp_path / "a")
    bigger = VideoMAEConfig(**{**SMALL, "num_hidden_layers": 2}, image_size=32, patch_size=8, num_frames=4)
    with pytest.raises(ValueError, match="weights missing"):
        FrozenVideoFeatures(str(tmp_path / "a"), config_overrides={"num_hidden_layers": bigger.num_hidden_layers})


def test_bad_grid_and_overrides_are_named():
    features = FrozenVideoFeatures("videomae", pretrained=False, config_overrides=dict(SMALL, image_size=32,
                                   patch_size=8, num_frames=4))
    with pytest.raises(ValueError, match="does not split"):
        features.grid(3, 32, 32)
    with pytest.raises(ValueError, match="no option 'hidden_sise'"):
        FrozenVideoFeatures("videomae", pretrained=False, config_overrides={"hidden_sise": 8})


def test_resize_assignment_keeps_probabilities():
    probs = torch.rand(2, 5, 4, 8, 8).softmax(dim=1)
    down = resize_assignment(probs, (2, 4, 4))
    up = resize_assignment(probs, (8, 16, 16))
    assert torch.allclose(down.sum(1), torch.ones(2, 2, 4, 4)) and torch.allclose(up.sum(1), torch.ones(2, 8, 16, 16))
    # Shrinking is the exact share of each cell: the mean over the 2x2x2 block.
    assert torch.allclose(down[0, :, 0, 0, 0], probs[0, :, :2, :2, :2].mean(dim=(1, 2, 3)))


def adapter(freeze_segmenter: bool = True, **trajtok_args) -> FeatureTrajTok:
    trajtok = tiny_tokenizer(num_slots=6, subtokens=(1, 2, 4), **trajtok_args)
    features = FrozenVideoFeatures("videomae", pretrained=False, config_overrides=dict(
        SMALL, image_size=32, patch_size=8, num_frames=4, tubelet_size=2))
    return FeatureTrajTok(trajtok, features, freeze_segmenter=freeze_segmenter)


def test_adapter_tokens_follow_the_masks_on_the_feature_grid():
    torch.manual_seed(0)
    tokenizer = adapter().eval()
    video = clip_video()
    tokens = tokenizer(video)
    assert tokens.tokens.shape == (2, 6 * 4, 32) and tokens.tokens_per_trajectory == 4  # eval: the most sub-tokens
    assert tokens.grid == (4, 8, 8) and tokens.logits.shape == (2, 4 * 8 * 8, 6)  # the pixel grid, for the losses
    # Valid slots are those that own a feature cell: recompute from the resized assignment.
    a = tokenizer.trajtok.assign(video)
    probs = a.logits.softmax(-1).reshape(2, 4, 8, 8, 6).permute(0, 4, 1, 2, 3)
    owners = resize_assignment(probs, (2, 4, 4)).argmax(dim=1).flatten(1)
    expected = torch.zeros(2, 6, dtype=torch.bool).scatter_(1, owners, True).repeat_interleave(4, dim=1)
    assert torch.equal(tokens.valid, expected) and int(owners.unique().numel()) > 1


def test_chunked_adapter_keeps_time_order():
    torch.manual_seed(0)
    tokenizer = adapter(chunk_frames=4).eval()
    video = clip_video(frames=8)
    tokens = tokenizer(video)
    assert tokens.chunks == 2 and tokens.tokens.shape == (2, 2 * 6 * 4, 32)
    first = tokenizer(video[:, :4])
    assert torch.allclose(tokens.tokens[:, : 6 * 4], first.tokens, atol=1e-5)


@pytest.mark.parametrize("freeze_segmenter", [True, False])
def test_only_what_should_train_gets_gradients(freeze_segmenter):
    torch.manual_seed(0)
    module = TrajTokModule(adapter(freeze_segmenter), ProbeHead(num_classes=3))
    module.train()
    tokens = module(clip_video())
    module.head.losses(tokens, {"label": torch.tensor([0, 2])})["ce"].backward()
    tokenizer = module.tokenizer
    assert all(p.grad is None for p in tokenizer.features.parameters())
    assert not tokenizer.features.model.training
    segmenter_grads = [p.grad is not None for p in tokenizer.trajtok.segmenter.parameters()]
    assert (not any(segmenter_grads)) if freeze_segmenter else any(segmenter_grads)
    assert tokenizer.trajtok.segmenter.training != freeze_segmenter
    assert all(p.grad is not None for p in tokenizer.trajtok.encoder.parameters())
    assert all(p.grad is not None for p in tokenizer.feature_proj.parameters())


def test_feature_patches_are_every_cell():
    features = FrozenVideoFeatures("videomae", pretrained=False, config_overrides=dict(
        SMALL, image_size=32, patch_size=8, num_frames=4, tubelet_size=2))
    video = clip_video()
    tokens = FeaturePatches(features)(video)
    assert tokens.tokens.shape == (2, 2 * 4 * 4, 32) and bool(tokens.valid.all()) and tokens.logits is None
    assert torch.equal(tokens.tokens, features(video).flatten(1, 3))
    assert torch.equal(tokens.labels[0].flatten(), torch.arange(32))


def test_linear_probe_is_a_linear_map_of_the_mean_of_valid_tokens():
    torch.manual_seed(0)
    head = ProbeHead(num_classes=3, pool="mean")
    head.build(8)
    head.eval()
    tokens = adapter().eval()(clip_video())
    x = torch.randn(2, tokens.tokens.shape[1], 8)
    tokens.tokens = x
    tokens.valid = torch.arange(x.shape[1]).expand(2, -1) < 5
    mean = masked_mean(x, tokens.valid)
    assert torch.allclose(mean[0], x[0, :5].mean(0))
    expected = head.classifier(torch.nn.functional.layer_norm(mean, (8,), head.norm.weight, head.norm.bias))
    assert torch.allclose(head.classify(tokens), expected, atol=1e-6)


@pytest.mark.parametrize("pool, depth", [("attention", 0), ("attention", 1), ("mean", 1)])
def test_probe_ignores_invalid_tokens(pool, depth):
    torch.manual_seed(0)
    head = ProbeHead(num_classes=4, pool=pool, depth=depth, width=16)
    head.build(32)
    head.eval()
    tokens = adapter().eval()(clip_video())
    tokens.valid[:, 8:] = False
    before = head.classify(tokens)
    tokens.tokens[:, 8:] = 50.0
    assert torch.allclose(before, head.classify(tokens), atol=1e-5)


def test_probe_class_names_are_checked_and_kept_in_the_state_dict():
    head = ProbeHead(num_classes=3)
    head.build(16)
    with pytest.raises(ValueError, match="num_classes=3, the data 2 classes"):
        head.set_class_names(["a", "b"])
    head.set_class_names(["a", "b", "c"])
    with pytest.raises(ValueError, match="class names differ"):
        head.set_class_names(["a", "b", "d"])

    lazy = ProbeHead()  # the number of classes comes from the data (or the checkpoint)
    lazy.build(16)
    with pytest.raises(ValueError, match="does not know its number of classes"):
        lazy.classify(adapter().eval()(clip_video()))
    lazy.load_state_dict(head.state_dict())
    assert lazy.class_names == ["a", "b", "c"] and torch.equal(lazy.classifier.weight, head.classifier.weight)


def test_a_fit_leaves_frozen_weights_bit_identical_and_the_checkpoint_small(tmp_path, cache, quiet_trainer):
    """A real Lightning fit on the synthetic "moving" task, then test from the checkpoint it wrote."""
    from datamodules import (
        ClassificationDataModule,
        ClipOptions,
        LoaderOptions,
        SyntheticOptions,
    )

    torch.manual_seed(0)
    VideoMAEModel(VideoMAEConfig(**SMALL, image_size=32, patch_size=8, num_frames=4)).save_pretrained(tmp_path / "vm")
    trajtok = tiny_tokenizer(num_slots=6, subtokens=(4,))
    tokenizer = FeatureTrajTok(trajtok, FrozenVideoFeatures(str(tmp_path / "vm")), freeze_segmenter=True)
    module = TrajTokModule(tokenizer, ProbeHead(pool="attention"), lr=1e-2)
    data = ClassificationDataModule(synthetic=SyntheticOptions(cache_dir=str(cache), train=16, val=8, test=8),
                                    clip=ClipOptions(num_frames=4, image_size=32), loader=LoaderOptions(batch_size=4))
    before = {k: v.clone() for k, v in module.named_parameters()}
    features_before = {k: v.clone() for k, v in tokenizer.features.model.state_dict().items()}
    trainer = quiet_trainer(max_steps=3, limit_val_batches=1, enable_checkpointing=True)  # in tmp_path
    trainer.fit(module, datamodule=data)

    after = dict(module.named_parameters())
    frozen = [k for k in before if k.startswith(("tokenizer.trajtok.segmenter", "tokenizer.trajtok.pixel_encoder"))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(torch.equal(v, tokenizer.features.model.state_dict()[k]) for k, v in features_before.items())
    trained = [k for k in before if k.startswith(("tokenizer.trajtok.encoder", "tokenizer.feature_proj", "head."))]
    assert all(not torch.equal(before[k], after[k]) for k in trained if "accuracy" not in k)
    assert module.head.class_names == data.class_names and module.head.num_classes == 4

    checkpoint = next((tmp_path / "checkpoints").glob("*.ckpt"))
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert not any(k.startswith("tokenizer.features.model.") for k in state)  # reloaded from its path
    metrics = trainer.test(module, datamodule=data, ckpt_path=str(checkpoint), verbose=False)[0]
    assert 0 <= metrics["test/top1"] <= 100 and metrics["test/top5"] == 100  # 4 classes: all within the top 5
