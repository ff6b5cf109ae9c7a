"""benchmarks.vlm_connectors without running it: the runs' options for each data set and clip length, the table rows
made from the runs' metrics (the default set's as they were, the motion set's per question type), and the blocks
benchmarks.report renders from them."""

from __future__ import annotations

import pytest

from benchmarks import report
from benchmarks import vlm_connectors as vc
from benchmarks.common import write_results
from datamodules.qa_motion import TYPES

ENV = {"torch": "2.x", "cpu": "x86_64", "threads": 2, "cpu_count": 2, "gpu": None}
EMPTY = "<!-- results:{0} -->\nanything\n<!-- /results:{0} -->\n"


def test_the_default_sets_runs_read_what_they_did():
    assert vc.data_overrides("default", 8) == ["--data.init_args.clip.num_frames=8"]
    assert vc.data_overrides("default", 64) == [
        "--data.init_args.clip.num_frames=64", "--data.init_args.synthetic.num_frames=64",
        "--data.init_args.synthetic.train=256", "--data.init_args.synthetic.val=32",
        "--data.init_args.synthetic.test=64", "--data.init_args.loader.batch_size=8"]
    assert [vc.clips_label(f) for f in vc.DEFAULT_FRAMES["default"]] == ["short (8 frames)", "long (64 frames)"]


def test_the_motion_sets_runs_compose_its_config_and_keep_its_sizes():
    assert vc.DATA["motion"] == ["synthetic/motion"]
    assert vc.data_overrides("motion", 16) == ["--data.init_args.clip.num_frames=16"]
    # 64 frames: what configs/synthetic/motion64.yaml makes, at motion.yaml's split sizes.
    assert vc.data_overrides("motion", 64) == ["--data.init_args.clip.num_frames=64",
                                               "--data.init_args.synthetic.num_frames=64",
                                               "--data.init_args.loader.batch_size=8"]
    assert vc.run_name("vlm", "motion", 16, 2) == "vlm-motion-16f-seed2"


def run(seed: int, accuracy: float, data: str = "default", typed: dict | None = None) -> dict:
    return {"clips": "short (8 frames)", "frames": 8, "connector": "TrajVLM", "seed": seed, "epochs": 1, "steps": 10,
            "fit_minutes": 1.0, "mc_accuracy": accuracy, "exact_match": 20.0, "llm_video_tokens": 11.0, **(typed or {})}


def test_a_default_row_has_the_columns_it_always_had():
    row = vc.table_row([run(0, 30.0), run(1, 40.0)], "default", "vlm", 1)
    assert list(row) == ["clips", "frames", "connector", "config", "epochs", "steps", "seeds",
                         "llm_video_tokens_per_clip_mean", "llm_video_tokens_per_clip_se", "mc_accuracy_pct_mean",
                         "mc_accuracy_pct_se", "exact_match_pct_mean", "exact_match_pct_se", "mc_accuracy_pct_by_seed"]
    assert (row["config"], row["mc_accuracy_pct_mean"], row["mc_accuracy_pct_se"]) == ("configs/vlm.yaml", 35.0, 5.0)


def test_a_motion_row_holds_each_types_accuracy_and_prior_over_seeds(tmp_path):
    asked = {f"mc_accuracy_{t}": 50.0 for t in TYPES[:-1]} | {f"prior_accuracy_{t}": 25.0 for t in TYPES[:-1]}
    mine = [run(0, 30.0, "motion", {**asked, "mc_accuracy_count": 40.0, "prior_accuracy": 28.0}),
            run(1, 40.0, "motion", {**asked, "mc_accuracy_count": 60.0, "prior_accuracy": 28.0})]
    row = vc.table_row(mine, "motion", "vlm", 1)
    assert row["data"] == "motion" and row["config"] == "configs/vlm.yaml + configs/synthetic/motion.yaml"
    assert (row["mc_accuracy_count_pct_mean"], row["mc_accuracy_count_pct_se"]) == (50.0, 10.0)
    assert (row["prior_accuracy_pct_mean"], row["prior_accuracy_pct_se"]) == (28.0, 0.0)
    assert row["mc_accuracy_camera_pct_mean"] == row["prior_accuracy_camera_pct_se"] == ""  # not asked: blank
    write_results("vlm_connectors_motion", {"env": ENV}, out=tmp_path / "vlm_connectors_motion.json", table=[row],
                  command="python -m benchmarks.vlm_connectors --data motion --segmenter-checkpoint x.ckpt")
    text = report.render(EMPTY.format("vlm-connectors-motion"), tmp_path)
    header, _, line = (next(x for x in text.splitlines() if x.startswith(start)) for start in ("| clips", "|", "| 8"))
    assert [c.strip() for c in header.strip("|").split("|")][4:] == ["all types % (prior)",
                                                                     *(f"{t} % (prior)" for t in TYPES)]
    assert line.startswith("| 8 frames | TrajVLM | 10 | 11.0 ± 0.0 | 35.0 ± 5.0 (28.0) | 50.0 ± 10.0 (25.0) |")
    assert line.endswith("| - (-) |")  # the camera: not asked


@pytest.mark.parametrize("data", ["default", "motion"])
def test_the_summary_prints_for_either_data(data, capsys):
    typed = {"prior_accuracy": 28.0, "mc_accuracy_count": 40.0, "prior_accuracy_count": 33.3} if data != "default" else {}
    rows = [run(0, 30.0, data, typed), {**run(0, 20.0, data, typed), "connector": "patch pooling"}]
    vc.print_summary(rows, data)
    out = capsys.readouterr().out
    assert "short (8 frames)" in out and ("prior 33.30" in out) == (data == "motion")
