"""Exports (config.json + model.safetensors) rebuild the same model without Lightning; TokenWriter's files load back."""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import VideoMAEConfig, VideoMAEModel

from trajtok.export import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    export_checkpoint,
    from_pretrained,
    instantiate,
    load_weights,
    main,
    save_pretrained,
)
from trajtok.module import TrajTokModule
from trajtok.tokenizer import FeatureTrajTok, TrajTok
from trajtok.writers import TokenWriter, load_tokens

PIXEL_ENCODER = {"class_path": "trajtok.tokenizer.ConvPyramid",
                 "init_args": {"out_dim": 32, "widths": [16, 32], "depths": [1, 1]}}
TRAJTOK = {"class_path": "trajtok.tokenizer.TrajTok",
           "init_args": {"dim": 32, "num_slots": 6, "heads": 2, "head_dim": 16, "assign_dim": 16,
                         "pixel_encoder": PIXEL_ENCODER}}
CLIP_HEAD = {"class_path": "heads.ClipHead",
             "init_args": {"width": 32, "depth": 1, "heads": 2, "embed_dim": 16,
                           "text_encoder": {"class_path": "heads.ByteTextEncoder"}}}
SMALL_VIDEOMAE = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                  "image_size": 32, "patch_size": 8, "num_frames": 4, "tubelet_size": 2}


def clip_video(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 4, 3, 32, 32, generator=torch.Generator().manual_seed(7))


def adapter_section(videomae_folder: Path) -> dict:
    """The ``model:`` section of a TrajAdapter probe over a frozen VideoMAE loaded from a local folder."""
    trajtok = copy.deepcopy(TRAJTOK)
    trajtok["init_args"]["subtokens"] = [4]
    features = {"class_path": "trajtok.tokenizer.FrozenVideoFeatures", "init_args": {"name_or_path": str(videomae_folder)}}
    return {
        "tokenizer": {"class_path": "trajtok.tokenizer.FeatureTrajTok",
                      "init_args": {"trajtok": trajtok, "features": features}},
        "head": {"class_path": "heads.ProbeHead", "init_args": {"pool": "attention"}},
        "lr": 0.01,
    }


@pytest.fixture(scope="module")
def videomae_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videomae")
    torch.manual_seed(0)
    VideoMAEModel(VideoMAEConfig(**SMALL_VIDEOMAE)).save_pretrained(folder)
    return folder


def assert_same_tokens(a, b) -> None:
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.valid, b.valid) and torch.equal(a.labels, b.labels)


def test_tokenizer_round_trip(tmp_path):
    torch.manual_seed(0)
    tokenizer = instantiate(TRAJTOK).eval()
    save_pretrained(tokenizer, tmp_path / "export", TRAJTOK)
    torch.manual_seed(1)  # any fresh build below has other weights: equality has to come from the file
    loaded = from_pretrained(tmp_path / "export")
    video = clip_video()
    assert type(loaded) is TrajTok and not loaded.training
    assert_same_tokens(loaded(video), tokenizer(video))
    assert not torch.equal(instantiate(TRAJTOK).eval()(video).tokens, tokenizer(video).tokens)

    document = json.loads((tmp_path / "export" / CONFIG_NAME).read_text())
    assert document["format"] == "trajtok-export" and document["format_version"] == 1
    init_args = document["model"]["init_args"]
    assert document["model"]["class_path"] == "trajtok.tokenizer.TrajTok" and init_args["num_slots"] == 6
    assert init_args["pixel_encoder"]["init_args"]["widths"] == [16, 32]
    # Defaults are written out, so a later change of a default cannot change what the export builds.
    assert init_args["subtokens"] == [1] and "chunk_frames" in init_args and init_args["chunk_frames"] is None


def test_clip_model_round_trip(tmp_path):
    torch.manual_seed(0)
    # A yaml's model: section, as is; its warm start names a file the export neither needs nor keeps.
    section = {"tokenizer": TRAJTOK, "head": CLIP_HEAD, "lr": 3e-4, "tokenizer_checkpoint": str(tmp_path / "gone.ckpt")}
    module = instantiate({"class_path": "trajtok.module.TrajTokModule", "init_args": section}).eval()
    save_pretrained(module, tmp_path / "export", section)
    document = json.loads((tmp_path / "export" / CONFIG_NAME).read_text())
    assert document["model"]["class_path"] == "trajtok.module.TrajTokModule"
    assert document["model"]["init_args"]["tokenizer_checkpoint"] is None
    torch.manual_seed(1)
    loaded = from_pretrained(tmp_path / "export")
    assert type(loaded) is TrajTokModule and loaded.hparams.lr == 3e-4
    video, texts = clip_video(), ["a red ball moves left", "two squares"]
    with torch.no_grad():
        tokens, again = module(video), loaded(video)
        assert_same_tokens(again, tokens)
        assert torch.equal(loaded.head.encode_video(again), module.head.encode_video(tokens))
        assert torch.equal(loaded.head.encode_text(texts), module.head.encode_text(texts))


def test_probe_over_frozen_features_keeps_class_names_and_leaves_the_frozen_model_out(tmp_path, videomae_folder):
    torch.manual_seed(0)
    section = adapter_section(videomae_folder)
    module = instantiate({"class_path": "trajtok.module.TrajTokModule", "init_args": section}).eval()
    module.head.set_class_names(["left", "right", "up"])  # what the datamodule does before fitting
    save_pretrained(module, tmp_path / "export", section)

    weights = tmp_path / "export" / WEIGHTS_NAME
    with safe_open(str(weights), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith("tokenizer.features.model.") for k in keys)
    assert load_weights(weights)["head._extra_state"] == {"class_names": ["left", "right", "up"]}

    torch.manual_seed(1)
    loaded = from_pretrained(tmp_path / "export")
    assert isinstance(loaded.tokenizer, FeatureTrajTok) and loaded.head.class_names == ["left", "right", "up"]
    video, batch = clip_video(), {"index": torch.tensor([3, 4])}
    with torch.no_grad():
        expected, got = module.head.predict(module(video), batch), loaded.head.predict(loaded(video), batch)
    assert torch.equal(got["probs"], expected["probs"]) and got["pred_name"] == expected["pred_name"]
    # The frozen model came back from its folder, bit for bit.
    frozen = module.tokenizer.features.model.state_dict()
    assert all(torch.equal(v, loaded.tokenizer.features.model.state_dict()[k]) for k, v in frozen.items())


def test_tied_and_non_contiguous_weights_round_trip(tmp_path):
    """A fine-tuned LM with tied input/output embeddings (as SmolLM2): stored once, both names restored."""
    torch.manual_seed(0)
    head = {"class_path": "heads.VLMHead", "init_args": {"config_overrides": {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "tie_word_embeddings": True}}}
    section = {"tokenizer": TRAJTOK, "head": head}
    module = instantiate({"class_path": "trajtok.module.TrajTokModule", "init_args": section}).eval()
    llm = module.head.llm
    assert llm.lm_head.weight.data_ptr() == llm.model.embed_tokens.weight.data_ptr()
    projector = module.head.projector.out
    projector.weight = torch.nn.Parameter(torch.randn(projector.weight.shape[1], projector.weight.shape[0]).t())
    assert not projector.weight.is_contiguous()
    save_pretrained(module, tmp_path / "export", section)

    with safe_open(str(tmp_path / "export" / WEIGHTS_NAME), framework="pt") as f:
        stored = set(f.keys())
    assert len({"head.llm.lm_head.weight", "head.llm.model.embed_tokens.weight"} & stored) == 1
    loaded = from_pretrained(tmp_path / "export")
    expected = module.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
    assert loaded.head.llm.lm_head.weight.data_ptr() == loaded.head.llm.model.embed_tokens.weight.data_ptr()


def test_tampered_config_missing_weight_and_wrong_class_fail_naming_the_file(tmp_path):
    torch.manual_seed(0)
    folder = save_pretrained(instantiate(TRAJTOK), tmp_path / "export", TRAJTOK)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME

    document = json.loads(config_path.read_text())
    document["model"]["init_args"]["num_slotz"] = 4
    config_path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=re.escape(str(config_path)) + r"(.|\n)*num_slotz"):
        from_pretrained(folder)
    document["model"]["init_args"].pop("num_slotz")
    config_path.write_text(json.dumps(document))

    with safe_open(str(weights_path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in list(f.keys())}
    dropped = min(tensors)
    save_file({k: v for k, v in tensors.items() if k != dropped}, str(weights_path), metadata=metadata)
    with pytest.raises(ValueError, match=re.escape(str(weights_path)) + r"(.|\n)*" + re.escape(dropped)):
        from_pretrained(folder)

    weights_path.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(weights_path))):
        from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / CONFIG_NAME))):
        from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="the config builds heads.ClipHead"):
        save_pretrained(instantiate(TRAJTOK), tmp_path / "wrong", CLIP_HEAD)


@pytest.fixture(scope="module")
def lightning_run(tmp_path_factory, videomae_folder):
    """A real one-step ``trajtok fit`` (in process) of a TrajAdapter probe on tiny synthetic classification data:
    the run folder holds the config.yaml LightningCLI saved and a checkpoint."""
    from trajtok.cli import TrajTokCLI

    root = tmp_path_factory.mktemp("run")
    config = {
        "seed_everything": 0,
        "trainer": {"max_steps": 1, "max_epochs": 1, "limit_val_batches": 0, "logger": False, "accelerator": "cpu",
                    "devices": 1, "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(root)},
        "model": adapter_section(videomae_folder),
        "data": {"class_path": "datamodules.ClassificationDataModule",
                 "init_args": {"synthetic": {"cache_dir": str(root / "cache"), "train": 4, "val": 4, "test": 4},
                               "clip": {"num_frames": 4, "image_size": 32}, "loader": {"batch_size": 4}}},
    }
    config_path = root / "input.yaml"
    config_path.write_text(yaml.safe_dump(config))
    with warnings.catch_warnings():  # Lightning warns that pytest's own sys.argv is not what it parses
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = TrajTokCLI(args=["fit", "--config", str(config_path)])
    checkpoint = next((root / "checkpoints").glob("*.ckpt"))
    return cli, config_path, root / "config.yaml", checkpoint


def test_export_checkpoint_of_a_lightning_run_gives_the_trained_model(lightning_run, tmp_path):
    cli, input_yaml, saved_yaml, checkpoint = lightning_run
    trained = cli.model.eval()
    assert saved_yaml.is_file() and not any(
        k.startswith("tokenizer.features.model.") for k in torch.load(checkpoint, weights_only=True)["state_dict"])

    loaded = from_pretrained(export_checkpoint(saved_yaml, checkpoint, tmp_path / "model"))
    video = clip_video()
    with torch.no_grad():
        assert_same_tokens(loaded(video), trained(video))
        assert torch.equal(loaded.head.classify(loaded(video)), trained.head.classify(trained(video)))
    assert loaded.head.class_names == list(cli.datamodule.class_names)

    main([str(input_yaml), str(checkpoint), str(tmp_path / "tokenizer"), "--part", "tokenizer"])
    tokenizer = from_pretrained(tmp_path / "tokenizer")
    assert type(tokenizer) is FeatureTrajTok
    with torch.no_grad():
        assert_same_tokens(tokenizer(video), trained.tokenizer(video))

    with pytest.raises(ValueError, match=re.escape(str(checkpoint))):  # a checkpoint of another model
        other = yaml.safe_load(input_yaml.read_text())
        other["model"]["tokenizer"]["init_args"]["trajtok"]["init_args"]["num_slots"] = 5
        (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
        export_checkpoint(tmp_path / "other.yaml", checkpoint, tmp_path / "other")


def test_token_writer_files_load_back_with_the_tokens_of_each_batch(lightning_run, tmp_path, quiet_trainer):
    cli, *_ = lightning_run
    out = tmp_path / "tokens"
    out.mkdir()
    (out / "batch_0_99.safetensors").write_bytes(b"stale")  # from an earlier, longer run: removed
    module, data = cli.model, cli.datamodule
    trainer = quiet_trainer(devices=1, callbacks=[TokenWriter(str(out))], limit_predict_batches=1)
    trainer.predict(module, datamodule=data, return_predictions=False)
    assert sorted(p.name for p in out.iterdir()) == ["batch_0_0.safetensors"]
    assert not module.tokenizer._forward_hooks  # the hook is gone after predict

    written = load_tokens(str(out / "batch_0_0.safetensors"))
    batch = next(iter(data.predict_dataloader()))
    with torch.no_grad():
        expected = module.eval()(batch["video"])
    size, slots = batch["video"].shape[0], 6 * 4
    assert written["tokens"].shape == (size, slots, 32) and written["valid"].shape == (size, slots)
    assert written["labels"].shape == (size, 4, 8, 8) and written["valid"].dtype == torch.bool
    assert torch.equal(written["index"], batch["index"])
    assert written["grid"] == (4, 8, 8) and written["tokens_per_trajectory"] == 4 and written["chunks"] == 1
    assert torch.equal(written["tokens"], expected.tokens) and torch.equal(written["valid"], expected.valid)
    assert torch.equal(written["labels"], expected.labels)
    export = save_pretrained(instantiate(TRAJTOK), tmp_path / "export", TRAJTOK)
    with pytest.raises(ValueError, match=re.escape(str(export / WEIGHTS_NAME)) + ".*not a TokenWriter file"):
        load_tokens(str(export / WEIGHTS_NAME))
    (tmp_path / "garbage.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "garbage.safetensors"))):
        load_tokens(str(tmp_path / "garbage.safetensors"))
