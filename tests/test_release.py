"""The released TrajTok checkpoints: the strict key map, the converted parts against transformers' own models, the
configs that compute the released function, and the commands on a release-layout file of a tiny model."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import CONFIGS, SMALL_DATA, run_trajtok
from release_fixtures import TinySizes, released_vit_key, write_release

from trajtok.conversion import convert_release, lightning_checkpoint, load_model_weights
from trajtok.errors import CheckpointError
from trajtok.module import TrajTokModule
from trajtok.release import (
    DEFAULT_TEXT_VOCAB,
    RELEASED_LAYOUTS,
    TEXT_LAYERS,
    UNUSED,
    ReleaseError,
    official_model,
    read_layout,
    unused_keys,
)
from trajtok.tokenizer import HFBackbone

SIZES = TinySizes()


@pytest.fixture(scope="module")
def release_files(tmp_path_factory):
    """Tiny release files of both kinds, their states and the transformers models their tensors came from."""
    folder = tmp_path_factory.mktemp("release")
    files = {}
    for kind in ("trajvitv2", "segmenter"):
        path = folder / f"{kind}.pth"
        state, parts = write_release(path, kind)
        files[kind] = (path, state, parts)
    return files


@pytest.fixture(scope="module")
def converted(release_files):
    path, _state, parts = release_files["trajvitv2"]
    checkpoint = torch.load(path, weights_only=True)
    result = convert_release(checkpoint, str(path))
    module = TrajTokModule.load_from_checkpoint(_save(lightning_checkpoint(result, str(path)), path.with_suffix(".ckpt")))
    return module.eval(), parts, result


def _save(checkpoint, path):
    torch.save(checkpoint, path)
    return path


def _convert(state, tmp_path, name="edited.pth"):
    path = tmp_path / name
    torch.save({"model": state, "meta": {}}, path)
    return convert_release(torch.load(path, weights_only=True), str(path))


# --- the pixel encoder ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["convnext", "dinov3_convnext", "resnet"])
def test_hf_backbone_fuses_every_stage(family):
    """Setting out_features after out_indices reset transformers 5 backbones to their last stage: one projection
    instead of four, and a pyramid that was one map."""
    overrides = {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32]}
    if family == "resnet":
        overrides.update(embedding_size=8, layer_type="basic")
    backbone = HFBackbone(family, out_dim=16, pretrained=False, config_overrides=overrides)
    assert list(backbone.backbone.channels) == [8, 16, 24, 32]
    assert len(backbone.projections) == 4
    maps = backbone.backbone(pixel_values=torch.randn(1, 3, 64, 64)).feature_maps
    assert [m.shape[1] for m in maps] == [8, 16, 24, 32]
    assert HFBackbone(family, out_dim=16, pretrained=False, config_overrides=overrides, out_indices=[2, 4]).backbone.channels == [16, 32]


def test_last_stage_norm_is_dinov3s_final_norm(converted, release_files):
    """The converted pixel encoder's last stage, normalised, equals transformers' DINOv3ConvNextModel output
    (whose ``layer_norm`` is the same per-position LayerNorm, eps 1e-6, over [pooled; patches])."""
    module, _, _ = converted
    reference = release_files["trajvitv2"][2]["backbone"]
    encoder = module.tokenizer.pixel_encoder
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        last = encoder.last_stage_norm(encoder.backbone(pixel_values=pixels).feature_maps[-1])
        expected = reference(pixel_values=pixels).last_hidden_state[:, 1:]
    assert encoder.last_stage_norm.norm.eps == 1e-6
    torch.testing.assert_close(last.flatten(2).transpose(1, 2), expected, atol=1e-5, rtol=1e-5)
    unnormalised = encoder.backbone(pixel_values=pixels).feature_maps[-1].flatten(2).transpose(1, 2)
    assert (unnormalised - expected).abs().max() > 0.1  # the option matters


# --- the head: transformers' ViT encoder and BERT ---------------------------------------------------------------------

def test_converted_transformer_is_the_released_vit(converted):
    """[CLS; tokens] through the converted blocks and final norm equals transformers' ViT layers (eps 1e-12, fused
    q, k, v split back) followed by the released final norm (eps 1e-5), with no key-padding mask."""
    module, parts, _ = converted
    head, vit = module.head, parts["vit"]
    x = torch.randn(3, 1 + SIZES.num_slots, SIZES.dim)
    with torch.no_grad():
        expected = x
        for layer in vit.layers:
            expected = layer(expected)
        expected = F.layer_norm(expected, (SIZES.dim,), head.transformer.norm.weight, head.transformer.norm.bias, 1e-5)
        ours = head.transformer(x)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    assert head.transformer.blocks[0].norm_attn.eps == 1e-12 and not head.mask_invalid


def test_video_embedding_attends_to_empty_slots(converted):
    """The released attention drops the padding mask: the embedding changes when an empty slot's token does."""
    module, _, _ = converted
    tokens = module.tokenizer(torch.randn(1, 2, 3, 64, 64))
    empty = (~tokens.valid[0]).nonzero()
    if not len(empty):
        pytest.skip("every slot won a patch")
    with torch.no_grad():
        before = module.head.encode_video(tokens)
        tokens.tokens[0, empty[0, 0]] += torch.randn(SIZES.dim)  # not a constant: the blocks' norms remove those
        after = module.head.encode_video(tokens)
    assert (before - after).abs().max() > 1e-4


CAPTIONS = ["A red circle passes behind the blue square.", "a man is singing", "x " * 100]


def test_converted_text_tower_is_berts_first_nine_layers(converted):
    """The text embedding's input is BERT's first 9 layers over [CLS] + word pieces (no [SEP], 76 at most): equal
    to transformers' BertModel truncated to those layers, CLS row, then the projection."""
    from transformers import BertTokenizerFast

    from trajtok.hf import resolve_path

    module, parts, _ = converted
    encoder = module.head.text_encoder
    bert = parts["bert"]
    bert.encoder.layer = bert.encoder.layer[:TEXT_LAYERS]
    tokenizer = BertTokenizerFast(vocab_file=resolve_path(DEFAULT_TEXT_VOCAB), do_lower_case=True)
    batch = encoder.tokenize(CAPTIONS)
    with_sep = tokenizer(CAPTIONS, padding=True, truncation=True, max_length=78)["input_ids"]
    for row, reference in zip(batch["input_ids"].tolist(), with_sep):
        reference = [i for i in reference if i not in (tokenizer.sep_token_id, tokenizer.pad_token_id)]
        assert [i for i in row if i != tokenizer.pad_token_id] == reference[:77]
    assert batch["input_ids"].shape[1] == 77  # the long caption: [CLS] + 76 word pieces
    with torch.no_grad():
        ours = encoder(CAPTIONS)
        expected = bert(**batch).last_hidden_state[:, 0]
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_temperature_and_projections(converted, release_files):
    module, _, _ = converted
    state = release_files["trajvitv2"][1]
    assert torch.isclose(module.head.logit_scale.log_scale.exp(), 1 / state["temp"])
    assert torch.equal(module.head.video_proj.bias, state["vision_proj.bias"])


# --- the key map is strict ------------------------------------------------------------------------------------------

def test_every_release_key_is_mapped_or_listed_as_unused(release_files):
    """The unused list is exact: what it holds is what the released function never reads, nothing more."""
    _, state, _ = release_files["trajvitv2"]
    layout = read_layout(state, "tiny")
    unused = set(unused_keys(state, layout))
    vit = "vision_encoder.vision_encoder.vit."
    expected = {k for k in state if k.startswith((vit + "embeddings.", vit + "layernorm.", vit + "pooler.", "itm_head."))}
    expected |= {k for k in state if (m := re.match(r"text_encoder\.encoder\.layer\.(\d+)\.", k)) and int(m.group(1)) >= TEXT_LAYERS}
    expected.add("text_encoder.embeddings.position_ids")
    assert unused == expected
    for pattern, why in UNUSED["trajvitv2"]:
        assert any(re.fullmatch(pattern, k) for k in state), f"no key of the released layout matches {pattern} ({why})"
    segmenter_state = release_files["segmenter"][1]
    for pattern, why in UNUSED["segmenter"]:
        assert any(re.fullmatch(pattern, k) for k in segmenter_state), f"{pattern} ({why})"


@pytest.mark.parametrize("edit, named", [
    ("rename", "vision_encoder.traj_tokenizer.segmenter.trajectory_perceiver.layers.1.0.to_q.weight"),
    ("drop", "vision_encoder.traj_tokenizer.traj_feature_updater.norm_lat.bias"),
    ("drop", "vision_encoder.traj_tokenizer.segmenter.log_scale"),
    ("drop", "temp"),
    ("widen", "vision_encoder.traj_tokenizer.segmenter.log_scale"),
    ("widen", "vision_encoder.traj_tokenizer.traj_feature_updater.layers.1.1.up.weight"),
    ("reshape", "vision_proj.weight"),
    ("extra", "vision_encoder.traj_tokenizer.pos_latents"),
    ("freqs", "vision_encoder.traj_tokenizer.traj_feature_updater.layers.0.0.rotary_emb.freqs"),
    ("norms", "patch_encoder.backbone.norms.3.weight"),
])
def test_a_key_that_does_not_fit_is_named(release_files, tmp_path, edit, named):
    state = dict(release_files["trajvitv2"][1])
    key = next(k for k in state if k.endswith(named)) if edit != "extra" else named
    if edit == "rename":
        state[key.replace("to_q", "to_query")] = state.pop(key)
    elif edit == "drop":
        del state[key]
    elif edit == "reshape":
        state[key] = state[key][:, :-1]
    elif edit == "widen":
        state[key] = torch.cat([state[key], state[key][..., :1]], -1)
    elif edit == "extra":
        state[key] = torch.zeros(3)
    elif edit == "freqs":
        state[key] = state[key] * 2
    else:
        state[key] = state[key] + 1
    with pytest.raises(ReleaseError, match=re.escape(named)):
        _convert(state, tmp_path)


def test_a_projected_transformer_layout_is_refused(release_files, tmp_path):
    state = dict(release_files["trajvitv2"][1])
    state["vision_encoder.vision_encoder.in_proj.weight"] = torch.zeros(1024, 512)
    with pytest.raises(ReleaseError, match="in_proj.weight.*does not map"):
        _convert(state, tmp_path)


def test_a_pickle_payload_is_refused(tmp_path):
    path = tmp_path / "payload.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "meta": {"hook": warnings.WarningMessage}}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_model_weights(torch.nn.Linear(1, 1), str(path))


def test_a_segmenter_release_fills_only_the_segmenter(release_files, tmp_path):
    path, state, _ = release_files["segmenter"]
    result = convert_release(torch.load(path, weights_only=True), str(path))
    assert result.initialised and all(k.startswith("tokenizer.encoder.") for k in result.initialised)
    assert set(result.unused) == {k for k in state if not k.startswith("vision_encoder.")
                                  or "high_res" in k}
    # The tokenizer_checkpoint warm start of a co-training run reads the same file.
    module = TrajTokModule(**_instantiated(official_model(result.layout)))
    with pytest.warns(UserWarning, match="no trajectory encoder"):
        module.__init__(**_instantiated(official_model(result.layout)), tokenizer_checkpoint=str(path))
    torch.testing.assert_close(module.tokenizer.segmenter.queries,
                               state["vision_encoder.trajectory_perceiver.latents"])


def _instantiated(model: dict) -> dict:
    from lightning.pytorch.cli import instantiate_module

    built = instantiate_module(TrajTokModule, model)
    return {"tokenizer": built.tokenizer, "head": built.head}


# --- the configs --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["segmenter", "trajvitv2"])
def test_official_configs_are_the_released_models(kind):
    config = yaml.safe_load((CONFIGS / "official" / f"{kind}.yaml").read_text())
    model = {k: v for k, v in config["model"].items() if k in ("tokenizer", "head")}
    assert model == yaml.safe_load(yaml.safe_dump(official_model(RELEASED_LAYOUTS[kind])))
    assert config["data"]["init_args"]["clip"]["eval_sampling"] == "linspace"
    assert config["data"]["init_args"]["clip"]["eval_resize"] == "squash"


def test_layout_is_read_from_the_shapes(release_files):
    layout = read_layout(release_files["trajvitv2"][1], "tiny")
    assert (layout.dim, layout.num_slots, layout.depth, layout.head_dim, layout.assign_dim) == (64, 8, 2, 8, 8)
    assert layout.backbone_depths == SIZES.backbone_depths and layout.backbone_widths == SIZES.backbone_widths
    assert (layout.transformer_width, layout.transformer_depth, layout.embed_dim) == (64, 2, 32)
    assert layout.text_config["num_hidden_layers"] == TEXT_LAYERS
    assert released_vit_key("layers.3.mlp.fc1.weight") == "encoder.layer.3.intermediate.dense.weight"


# --- the commands ----------------------------------------------------------------------------------------------------

@pytest.mark.subprocess
@pytest.mark.slow
def test_convert_then_test_and_visualize_a_release_file(release_files, tmp_path, cache):
    """``trajtok convert`` writes a checkpoint that ``load_from_checkpoint`` rebuilds; ``trajtok test`` reads the
    release file as downloaded; ``trajtok visualize`` paints the released segmenter's trajectories."""
    path, _, _ = release_files["trajvitv2"]
    out = tmp_path / "converted.ckpt"
    result = run_trajtok(["convert", str(path), str(out)], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "released trajvitv2" in result.stdout and out.is_file()
    module = TrajTokModule.load_from_checkpoint(out)
    assert module.head.text_encoder.special_tokens == "cls"

    result = run_trajtok(["test", "--config", str(CONFIGS / "clip.yaml"), *SMALL_DATA, "--ckpt_path", str(path),
                          "--trainer.logger=false"], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "t2v" in result.stdout + result.stderr

    segmenter, _, _ = release_files["segmenter"]
    result = run_trajtok(["visualize", "--config", str(CONFIGS / "segmenter.yaml"), *SMALL_DATA, "--ckpt_path",
                          str(segmenter), "--split", "test", "--limit", "1", "--out", str(tmp_path / "viz"),
                          "--display_size", "32"], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trajectories=" in result.stdout and "no trajectory encoder" in result.stderr



def test_segmenter_features_overlay_is_the_released_segmenter():
    config = yaml.safe_load((CONFIGS / "official" / "segmenter_features.yaml").read_text())
    trajtok = config["model"]["tokenizer"]["init_args"]["trajtok"]
    expected = yaml.safe_load(yaml.safe_dump(official_model(RELEASED_LAYOUTS["segmenter"])["tokenizer"]))
    expected["init_args"].update(subtokens=[4], chunk_frames=8)
    assert trajtok == expected and config["model"]["tokenizer"]["init_args"]["freeze_segmenter"]


def test_trajadapter_starts_from_a_released_segmenter(release_files):
    """FeatureTrajTok's segmenter_checkpoint reads a release file: its pixel encoder and segmenter, strictly."""
    from lightning.pytorch.cli import instantiate_module

    from trajtok.tokenizer import FeatureTrajTok, FrozenVideoFeatures

    path, state, _ = release_files["segmenter"]
    layout = read_layout(state, "tiny")
    trajtok = instantiate_module(TrajTokModule, official_model(layout)).tokenizer
    features = FrozenVideoFeatures("videomae", pretrained=False, config_overrides={
        "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "image_size": 64,
        "patch_size": 16, "num_frames": 2, "tubelet_size": 2})
    adapter = FeatureTrajTok(trajtok, features, segmenter_checkpoint=str(path))
    torch.testing.assert_close(adapter.trajtok.segmenter.queries, state["vision_encoder.trajectory_perceiver.latents"])
    torch.testing.assert_close(adapter.trajtok.pixel_encoder.stage_norm.norm.weight,
                               state["vision_encoder.patch_encoder.ln.weight"])
    assert adapter(torch.randn(1, 2, 3, 64, 64)).tokens.shape[1] == SIZES.num_slots


@pytest.mark.subprocess
@pytest.mark.slow
def test_released_segmenter_on_a_davis_folder(release_files, tmp_path, cache):
    """``trajtok test`` of a release file with the official config on a DAVIS-2017 layout prints VEQ and STQ."""
    from video_segmentation_fixtures import davis

    path, _, _ = release_files["segmenter"]
    result = run_trajtok(["test", "--config", str(CONFIGS / "official" / "segmenter.yaml"), "--config",
                          str(CONFIGS / "benchmarks" / "davis2017.yaml"), f"--data.init_args.root={davis(tmp_path / 'davis')}",
                          "--ckpt_path", str(path), "--trainer.logger=false"], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/vos_veq_official" in result.stdout and "test/vos_videos" in result.stdout


RETRIEVAL_PRESETS = ["msrvtt_1ka", "msrvtt_9k", "didemo", "activitynet", "vatex"]


@pytest.mark.parametrize("name", RETRIEVAL_PRESETS)
def test_official_protocol_survives_every_retrieval_preset(name, tmp_path, cli_in_tmp, capsys):
    """The official config, then a benchmark preset: the preset's data with the released reading of clips (8 frames
    at linspace, squashed to 224 x 224 bicubic)."""
    import benchmark_fixtures as fx

    from trajtok.cli import TrajTokCLI

    root = fx.layout(name, tmp_path / "data")
    with pytest.raises(SystemExit):
        TrajTokCLI(args=["test", "--config", str(CONFIGS / "official" / "trajvitv2.yaml"), "--config",
                         str(CONFIGS / "benchmarks" / f"{name}.yaml"), f"--data.init_args.root={root}", "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["data"]["class_path"] == "datamodules.public_data.RetrievalBenchmark"
    clip = config["data"]["init_args"]["clip"]
    assert (clip["num_frames"], clip["image_size"], clip["eval_sampling"], clip["eval_resize"]) == (8, 224, "linspace", "squash")
    assert config["model"]["head"]["init_args"]["mask_invalid"] is False


def test_a_release_file_tests_on_a_retrieval_preset(release_files, tmp_path, cli_in_tmp):
    """``trajtok test --ckpt_path model.pth`` on a benchmark folder: the release's model, its weights, the preset's data."""
    import benchmark_fixtures as fx

    from trajtok.cli import TrajTokCLI

    path, state, _ = release_files["trajvitv2"]
    root = fx.layout("msrvtt_1ka", tmp_path / "data")
    cli = TrajTokCLI(args=["test", "--config", str(CONFIGS / "official" / "trajvitv2.yaml"), "--config",
                           str(CONFIGS / "benchmarks" / "msrvtt_1ka.yaml"), f"--data.init_args.root={root}",
                           "--data.init_args.clip.image_size=64", "--data.init_args.loader.num_workers=0",
                           "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--ckpt_path", str(path)])
    assert {"test/t2v_r1", "test/v2t_r1"} <= set(cli.trainer.callback_metrics)
    torch.testing.assert_close(cli.model.head.cls, state["vision_encoder.vision_encoder.cls_token"])


def test_a_release_replaces_the_config_model_whole(release_files, tmp_path, cli_in_tmp):
    """Options of the config's tokenizer and head that the release does not set do not survive: the model is the
    released one, and the command warns about what it replaced."""
    from trajtok.cli import TrajTokCLI

    path, _, _ = release_files["trajvitv2"]
    with pytest.warns(UserWarning, match=r"replaces the config's.*context_pool 2 -> 1"):
        cli = TrajTokCLI(args=["test", "--config", str(CONFIGS / "clip.yaml"), *SMALL_DATA, "--trainer.logger=false",
                               "--model.tokenizer.init_args.context_pool=2", "--model.head.init_args.mask_invalid=true",
                               "--trainer.limit_test_batches=1", "--ckpt_path", str(path)])
    assert cli.model.tokenizer.segmenter.context_pool == 1 and cli.model.head.mask_invalid is False


def test_weights_that_fit_a_tokenizer_of_another_function_are_refused(release_files):
    """A tokenizer whose keys and shapes fit the release but whose options differ (here the rotary form) would
    compute another function with the released weights."""
    from lightning.pytorch.cli import instantiate_module

    path, state, _ = release_files["trajvitv2"]
    model = official_model(read_layout(state, "tiny"))
    model["tokenizer"]["init_args"]["rotary"] = "axial"
    built = instantiate_module(TrajTokModule, model)
    with pytest.raises(ReleaseError, match=r"segmenter\.rotary:class: AxialRotary \(released: SequenceRotary\)"):
        TrajTokModule(tokenizer=built.tokenizer, head=built.head, tokenizer_checkpoint=str(path))
    with pytest.raises(ReleaseError, match="rotary"):
        load_model_weights(built, str(path))


def test_fit_fine_tunes_from_a_release_or_its_conversion(release_files, tmp_path, cli_in_tmp, cache, monkeypatch,
                                                         capsys):
    """``fit --ckpt_path`` of a release file, or of its ``trajtok convert`` checkpoint, starts a new run from its
    weights (neither holds optimiser state to resume); a file with a key missing is one line naming it, exit 2."""
    from trajtok.cli import TrajTokCLI, main

    monkeypatch.setenv("TRAJTOK_CACHE", str(cache))
    path, state, _ = release_files["trajvitv2"]
    converted = tmp_path / "converted.ckpt"
    main(["convert", str(path), str(converted)])
    for source in (path, converted):
        cli = TrajTokCLI(args=["fit", "--config", str(CONFIGS / "clip.yaml"), *SMALL_DATA, "--ckpt_path", str(source),
                               "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
                               "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"])
        assert cli.trainer.global_step == 1 and cli.model.head.mask_invalid is False

    bad = tmp_path / "bad.pth"
    torch.save({"model": {k: v for k, v in state.items() if k != "vision_proj.bias"}, "meta": {}}, bad)
    with pytest.raises(SystemExit) as stop:
        main(["test", "--config", str(CONFIGS / "clip.yaml"), *SMALL_DATA, "--ckpt_path", str(bad)])
    assert stop.value.code == 2 and "vision_proj.bias" in capsys.readouterr().err
