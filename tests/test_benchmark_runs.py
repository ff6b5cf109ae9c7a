"""``benchmarks.common.fit_and_test``, the one fit-and-test of the benchmarks that train: a fresh run folder named
once, the test of that fit's last checkpoint, and each command's metrics read back."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmarks import common


def fake_trajtok(calls: list[list[str]], metrics: dict[str, dict[str, float]]):
    """Stands for ``run_trajtok``: records the arguments and, as a CSV logger does, writes the stage's metrics to
    the next ``version_N`` under the run's ``--trainer.default_root_dir``."""
    def run(args: list[str], cwd: Path = common.ROOT) -> str:
        calls.append(args)
        root = Path(next(a.split("=", 1)[1] for a in args if a.startswith("--trainer.default_root_dir=")))
        assert cwd == root
        version = len(list((root / "logs").glob("version_*"))) if (root / "logs").exists() else 0
        path = root / "logs" / f"version_{version}" / "metrics.csv"
        path.parent.mkdir(parents=True)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", *metrics[args[0]]])
            writer.writeheader()
            writer.writerow({"step": 0, **dict.fromkeys(metrics[args[0]], "")})
            writer.writerow({"step": 1, **metrics[args[0]]})
        if args[0] == "fit":
            (root / "checkpoints").mkdir()
            (root / "checkpoints" / "last.ckpt").write_text("weights")
        return ""

    return run


def test_fit_and_test_names_the_run_folder_once_and_tests_its_last_checkpoint(tmp_path, monkeypatch):
    calls: list[list[str]] = []
    metrics = {"fit": {"train/loss": 1.5, "trainable_params": 9.0}, "test": {"test/top1": 62.5}}
    monkeypatch.setattr(common, "run_trajtok", fake_trajtok(calls, metrics))
    run_dir = tmp_path / "runs" / "probe-seed0"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_text("a previous run's")  # must not be tested

    done = common.fit_and_test(["adapter", "peers/vit3d"], run_dir, ["--seed_everything=3"],
                               fit=["--trainer.max_epochs=2"], test=["--data.init_args.split=test"])

    fit, test = calls
    configs = [str(common.ROOT / "configs" / "adapter.yaml"), str(common.ROOT / "configs" / "peers" / "vit3d.yaml")]
    assert fit == ["fit", "--config", configs[0], "--config", configs[1], f"--trainer.default_root_dir={run_dir}",
                   "--seed_everything=3", "--trainer.max_epochs=2"]
    assert test == ["test", *fit[1:7], "--data.init_args.split=test", f"--ckpt_path={run_dir}/checkpoints/last.ckpt"]
    assert (run_dir / "checkpoints" / "last.ckpt").read_text() == "weights"
    assert done["fit"] == {"step": 1.0, "train/loss": 1.5, "trainable_params": 9.0}
    assert done["test"] == {"step": 1.0, "test/top1": 62.5}
    assert done["fit_minutes"] >= 0 and done["test_minutes"] >= 0


def test_each_command_reads_the_metrics_file_it_wrote(tmp_path):
    (tmp_path / "logs" / "fit").mkdir(parents=True)
    (tmp_path / "logs" / "fit" / "metrics.csv").write_text("step,a\n0,1\n")
    before = common.metrics_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="no metrics.csv written"):
        common.new_metrics_file(tmp_path, before)
    (tmp_path / "logs" / "test").mkdir()
    (tmp_path / "logs" / "test" / "metrics.csv").write_text("step,b\n0,2\n")
    assert common.new_metrics_file(tmp_path, before) == tmp_path / "logs" / "test" / "metrics.csv"


def test_configs_are_names_under_configs_or_paths(tmp_path):
    own = tmp_path / "mine.yaml"
    assert common.config_args(["clip", own]) == ["--config", str(common.ROOT / "configs" / "clip.yaml"),
                                                 "--config", str(own)]
