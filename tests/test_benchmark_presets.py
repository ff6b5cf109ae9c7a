"""The presets of ``configs/benchmarks/``: each composes after a model config and, with only ``root`` pointing at a
folder laid out as it documents (a tiny copy in the official formats, ``benchmark_fixtures``), resolves and runs
through the real CLI (in-process, as ``trajtok`` runs it)."""

from __future__ import annotations

import benchmark_fixtures as fx
import pytest
import yaml
from helpers import CONFIGS

from trajtok.cli import TrajTokCLI

PRESETS = sorted((CONFIGS / "benchmarks").glob("*.yaml"))
CLIP = str(CONFIGS / "clip.yaml")
ADAPTER = str(CONFIGS / "adapter.yaml")
SMALL = ["--data.init_args.clip.image_size=64", "--data.init_args.loader.batch_size=2", "--data.init_args.loader.num_workers=0",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
# The benchmark each preset names, as registered.
BENCHMARK = {p.stem: p.stem for p in PRESETS}

pytestmark = pytest.mark.usefixtures("cli_in_tmp")


def trajtok(*args: str) -> TrajTokCLI:
    return TrajTokCLI(args=list(args))


def test_every_benchmark_has_a_preset_and_a_tiny_copy():
    assert {p.stem for p in PRESETS} == set(fx.LAYOUTS)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_composes_after_the_clip_config_and_prints(preset, tmp_path, capsys):
    root = fx.layout(preset.stem, tmp_path / "data")
    with pytest.raises(SystemExit) as stop:
        trajtok("test", "--config", CLIP, "--config", str(preset), f"--data.init_args.root={root}", "--print_config")
    assert stop.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    written = yaml.safe_load(preset.read_text())
    assert config["data"]["class_path"] == written["data"]["class_path"]
    assert config["data"]["init_args"]["benchmark"] == BENCHMARK[preset.stem]
    assert config["data"]["init_args"]["root"] == str(root)
    assert config["model"]["head"]["class_path"] == "heads.ClipHead"  # the model config is kept


def test_root_is_the_one_required_option(capsys):
    with pytest.raises(SystemExit):
        trajtok("test", "--config", CLIP, "--config", str(CONFIGS / "benchmarks/msrvtt_1ka.yaml"))
    error = capsys.readouterr().err
    assert "the following arguments are required: root" in error


@pytest.mark.parametrize("name", ["msrvtt_1ka", "didemo", "activitynet", "vatex"])
def test_retrieval_preset_tests_on_the_folder_alone(name, tmp_path):
    root = fx.layout(name, tmp_path / "data")
    cli = trajtok("test", "--config", CLIP, "--config", str(CONFIGS / f"benchmarks/{name}.yaml"),
                  f"--data.init_args.root={root}", "--model.head.init_args.depth=1", "--allow_untrained=true", *SMALL)
    metrics = cli.trainer.callback_metrics
    assert {"test/t2v_r1", "test/v2t_r1", "test/t2v_medr"} <= set(metrics)
    assert all(0 <= float(metrics[f"test/{d}_r10"]) <= 100 for d in ("t2v", "v2t"))


def test_msrvtt_9k_preset_fits(tmp_path):
    root = fx.layout("msrvtt_9k", tmp_path / "data")
    cli = trajtok("fit", "--config", CLIP, "--config", str(CONFIGS / "benchmarks/msrvtt_9k.yaml"),
                  f"--data.init_args.root={root}", "--model.head.init_args.depth=1", "--trainer.fast_dev_run=true",
                  *SMALL)
    assert cli.trainer.state.finished and "train/loss" in cli.trainer.callback_metrics


@pytest.mark.parametrize("name", ["k400", "ssv2"])
def test_classification_preset_fits_a_probe(name, tmp_path):
    root = fx.layout(name, tmp_path / "data")
    cli = trajtok("fit", "--config", ADAPTER, "--config", str(CONFIGS / f"benchmarks/{name}.yaml"),
                  f"--data.init_args.root={root}", "--trainer.fast_dev_run=true", *SMALL)
    assert cli.trainer.state.finished
    assert cli.model.head.num_classes == 3  # the benchmark's classes, handed to the head


@pytest.mark.parametrize("name", ["k400", "ssv2"])
def test_classification_preset_tests_zero_shot_with_the_clip_head(name, tmp_path):
    root = fx.layout(name, tmp_path / "data")
    cli = trajtok("test", "--config", CLIP, "--config", str(CONFIGS / f"benchmarks/{name}.yaml"),
                  f"--data.init_args.root={root}", "--model.head.init_args.depth=1", "--allow_untrained=true", *SMALL)
    assert 0 <= float(cli.trainer.callback_metrics["test/zeroshot_top1"]) <= 100


def test_a_preset_that_stops_on_a_missing_clip_names_them_all_before_the_first_batch(tmp_path, capsys):
    """MSR-VTT stops on a missing clip (on_bad_video: raise): every clip is checked when the data is set up, and
    the user gets one message listing all missing ones, not an error after most of the evaluation has run."""
    from trajtok.cli import main

    root = fx.layout("msrvtt_1ka", tmp_path / "data")
    clips = [root / "videos/all/video3.mp4", root / "videos/all/video4.mp4"]  # the test split's two clips
    for clip in clips:
        clip.unlink()
    with pytest.raises(SystemExit) as exit_:
        main(["test", "--config", CLIP, "--config", str(CONFIGS / "benchmarks/msrvtt_1ka.yaml"),
              f"--data.init_args.root={root}", "--model.head.init_args.depth=1", "--allow_untrained=true", *SMALL])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "2 file(s) named by the annotations are missing" in error and "Traceback" not in error
    assert all(f"{clip} (" in error for clip in clips)
    assert "Testing" not in error  # no batch ran
