"""The ``trajtok`` entry point, run as a user runs it on the real configs: in a subprocess, or, for the smoke run
of each config and the config errors, ``trajtok.cli.main`` in this process (the same code path after the imports,
which this process pays once instead of once per run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from helpers import CONFIGS, ROOT, SMALL_DATA, python_path, run_trajtok

from trajtok.cli import main, with_bases

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]


def small_data(config: Path) -> list[str]:
    """SMALL_DATA for a config's data; a JointDataModule's videos and images take it each."""
    chain = [yaml.safe_load(Path(f).read_text()) or {} for f in with_bases(["--config", str(config)])[1::2]]
    data_class = [c["data"]["class_path"] for c in chain if "class_path" in c.get("data", {})][-1]
    if data_class.endswith("JointDataModule"):
        return [arg.replace("--data.init_args.", f"--data.init_args.{part}.init_args.")
                for part in ("videos", "images") for arg in SMALL_DATA]
    return SMALL_DATA


#: Configs that read a previous stage's checkpoint by default; alone they start from scratch.
STAGE_TWO = {"clip_cotrain": ["--model.tokenizer_checkpoint=null"]}


#: Configs that are not a fit of their own: another command's (tests/test_pseudo_labels_cli.py runs `trajtok
#: pseudo-label`) and the defaults every config extends.
NOT_FIT = {"pseudo_labels", "defaults"}


@pytest.fixture
def in_process(cli_in_tmp, cache, monkeypatch):
    """``trajtok.cli.main`` in this process, with the session's synthetic data cache, offline."""
    monkeypatch.setenv("TRAJTOK_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return main


@pytest.mark.parametrize("config", sorted(p for p in CONFIGS.glob("*.yaml") if p.stem not in NOT_FIT), ids=lambda p: p.stem)
def test_fast_dev_run_of_each_config(config, in_process):
    in_process(["fit", "--config", str(config), "--trainer.fast_dev_run=true", *small_data(config),
                *STAGE_TWO.get(config.stem, [])])


def test_the_two_stage_recipe_chains_by_default(tmp_path, cache):
    """make demo's path: stage 2 (clip_cotrain.yaml) reads stage 1's (segmenter.yaml) last.ckpt with no option,
    and says which file is missing when stage 1 has not run."""
    steps = ["--trainer.max_steps=2", "--trainer.limit_val_batches=1", *SMALL_DATA]
    missing = run_trajtok(["fit", "--config", str(ROOT / "configs/clip_cotrain.yaml"), *steps], tmp_path, cache)
    assert missing.returncode != 0 and "runs/segmenter/checkpoints/last.ckpt" in missing.stderr
    stage1 = run_trajtok(["fit", "--config", str(ROOT / "configs/segmenter.yaml"), *steps], tmp_path, cache)
    assert stage1.returncode == 0, stage1.stderr[-3000:]
    assert (tmp_path / "runs/segmenter/checkpoints/last.ckpt").is_file()
    stage2 = run_trajtok(["fit", "--config", str(ROOT / "configs/clip_cotrain.yaml"), *steps], tmp_path, cache)
    assert stage2.returncode == 0, stage2.stderr[-3000:]
    assert (tmp_path / "runs/clip_cotrain/checkpoints/last.ckpt").is_file()


def test_print_config_resolves_the_yaml(tmp_path, cache):
    result = run_trajtok(["fit", "--config", str(ROOT / "configs/clip.yaml"), "--print_config"], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    config = yaml.safe_load(result.stdout)
    written = yaml.safe_load((ROOT / "configs/clip.yaml").read_text())
    assert config["model"]["tokenizer"]["class_path"] == "trajtok.tokenizer.TrajTok"
    assert config["model"]["head"]["init_args"]["width"] == written["model"]["head"]["init_args"]["width"]
    assert config["model"]["lr"] == pytest.approx(written["model"]["lr"])
    # Defaults the yaml leaves out are filled in.
    assert config["model"]["tokenizer"]["init_args"]["subtokens"] == [1]
    # The datamodule's option groups print nested, with the yaml's values and the defaults it leaves out.
    data = config["data"]["init_args"]
    assert data["loader"] == {**written["data"]["init_args"]["loader"], "eval_batch_size": None}
    assert data["clip"] == {**written["data"]["init_args"]["clip"], "crop_scale": [0.8, 1.0], "horizontal_flip": False,
                            "eval_sampling": "middle", "eval_resize": "crop"}
    assert data["synthetic"]["train"] == 768 and "batch_size" not in data


@pytest.mark.parametrize(
    "override, named",
    [
        (["--model.learning_rate=0.1"], "learning_rate"),
        (["--model.lr=fast"], "lr"),
        (["--model.tokenizer.init_args.num_slotz=4"], "num_slotz"),
        (["--model.tokenizer.init_args.subtokens=[3]"], "subtokens"),
        (["--data.init_args.on_bad_video=ignore"], "on_bad_video"),
    ],
)
def test_bad_config_fails_before_training_naming_the_key(override, named, tmp_path, in_process, capsys):
    with pytest.raises(SystemExit) as stop:
        in_process(["fit", "--config", str(ROOT / "configs/clip.yaml"), *SMALL_DATA, *override])
    assert stop.value.code != 0
    assert named in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.ckpt"))


def test_fit_twice_then_test_prints_the_retrieval_table(tmp_path, cache):
    short = ["--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.max_epochs=1", *SMALL_DATA]
    config = str(ROOT / "configs/clip.yaml")
    for _ in range(2):  # re-running into the same folder must not trip over the saved config
        result = run_trajtok(["fit", "--config", config, *short], tmp_path, cache)
        assert result.returncode == 0, result.stderr[-3000:]
    # The model summary counts an example clip through the tokenizer and the head (not "Total FLOPs: 0").
    rows = [line.split("│") for line in result.stdout.splitlines() if line.count("│") > 6]
    flops = {row[2].strip(): row[6].strip() for row in rows}  # | # | Name | Type | Params | Mode | FLOPs | ...
    assert re.fullmatch(r"[\d.]+ [MB]", flops["tokenizer"]) and re.fullmatch(r"[\d.]+ [MB]", flops["head"]), flops
    assert re.search(r"Total FLOPs: [\d.]+ [MB]", result.stdout)
    checkpoint = tmp_path / "runs/clip/checkpoints/last.ckpt"
    assert checkpoint.exists()
    # The second fit overwrote last.ckpt, which holds its final state: `test --ckpt_path .../last.ckpt` must
    # never read a stale run, nor the best epoch instead of the last.
    assert not list(checkpoint.parent.glob("last-v*.ckpt"))
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"] == 2
    result = run_trajtok(["test", "--config", config, *SMALL_DATA, f"--ckpt_path={checkpoint}"], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Retrieval (test)" in output
    assert "t2v" in output and "v2t" in output


def test_bf16_mixed_precision_and_predict(tmp_path, cache):
    config = str(ROOT / "configs/clip.yaml")
    fit = run_trajtok(["fit", "--config", config, "--trainer.fast_dev_run=true", "--trainer.precision=bf16-mixed",
                      *SMALL_DATA], tmp_path, cache)
    assert fit.returncode == 0, fit.stderr[-3000:]
    predict = run_trajtok(["predict", "--config", config, "--trainer.limit_predict_batches=1", "--allow_untrained=true",
                          *SMALL_DATA], tmp_path, cache)
    assert predict.returncode == 0, predict.stderr[-3000:]


def test_probe_fit_test_and_predict_from_its_checkpoint(tmp_path, cache):
    config = str(ROOT / "configs/probe_linear.yaml")
    fit = run_trajtok(["fit", "--config", config, "--trainer.max_steps=2", "--trainer.limit_val_batches=1",
                      "--trainer.max_epochs=1", *SMALL_DATA], tmp_path, cache)
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoint = tmp_path / "runs/probe_linear/checkpoints/last.ckpt"
    test = run_trajtok(["test", "--config", config, *SMALL_DATA, f"--ckpt_path={checkpoint}"], tmp_path, cache)
    assert test.returncode == 0, test.stderr[-3000:]
    assert "Classification (test): top-1" in test.stdout + test.stderr
    predict = run_trajtok(["predict", "--config", config, *SMALL_DATA, f"--ckpt_path={checkpoint}",
                          "--trainer.limit_predict_batches=1"], tmp_path, cache)
    assert predict.returncode == 0, predict.stderr[-3000:]
    # A head whose class count disagrees with the data fails before training, naming both.
    bad = run_trajtok(["fit", "--config", config, "--model.head.init_args.num_classes=3", "--trainer.fast_dev_run=true",
                      *SMALL_DATA], tmp_path, cache)
    assert bad.returncode != 0 and "num_classes=3, the data 4 classes" in bad.stderr


def test_vlm_predict_writes_an_answer_per_question(tmp_path, cache):
    config = str(ROOT / "configs/vlm.yaml")
    fit = run_trajtok(["fit", "--config", config, "--trainer.max_steps=1", "--trainer.limit_val_batches=1",
                      "--trainer.max_epochs=1", *SMALL_DATA], tmp_path, cache)
    assert fit.returncode == 0, fit.stderr[-3000:]
    predict = run_trajtok(["predict", "--config", config, *SMALL_DATA, "--trainer.limit_predict_batches=2",
                          f"--ckpt_path={tmp_path / 'runs/vlm/checkpoints/last.ckpt'}"], tmp_path, cache)
    assert predict.returncode == 0, predict.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "runs/vlm/predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 4 and len({r["index"] for r in rows}) == 8  # two batches of 4 questions
    assert all(isinstance(r["prediction"], str) and r["choice"] in r["options"] for r in rows)
    assert all(r["llm_video_tokens"] >= 1 for r in rows)


def test_the_documented_worked_example_head_trains_through_the_cli(tmp_path, cache):
    example = (ROOT / "examples/custom_head.py").read_text()
    usage = (ROOT / "docs/usage.md").read_text()
    section = usage[usage.index("## Adding a head"):]
    assert "```python\n" + example + "```" in section  # the docs show exactly the file that runs here
    importable = {"PYTHONPATH": python_path(ROOT)}  # the docs' PYTHONPATH=.
    fit = run_trajtok(["fit", "--config", str(ROOT / "examples/custom_head.yaml"), "--trainer.limit_train_batches=2",
                      "--trainer.limit_val_batches=1", *SMALL_DATA], tmp_path, cache, env=importable)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "val/top1" in (tmp_path / "runs/examples_custom_head/logs/version_0/metrics.csv").read_text()
