"""benchmarks/gpu_layouts.py end to end on CPU (``--device cpu --tiny``), its out-of-memory halving and its budget."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from benchmarks import gpu_layouts


@pytest.mark.slow
def test_the_tiny_cpu_run_measures_every_layout_and_writes_its_table(tmp_path, capsys):
    out = tmp_path / "gpu_layouts.json"
    gpu_layouts.main(["--device", "cpu", "--tiny", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert {(r["model"], r["mode"]) for r in rows} == {(m, mode) for m in gpu_layouts.MODELS for mode in ("train", "infer")}
    for row in rows:
        assert row["status"] == "ok" and row["T"] == 2 and row["pixels"] == 64, row
        assert row["batch"] == row["start_batch"] == 2 and row["steps"] == 1 and row["clips_per_s"] > 0
    with open(out.with_suffix(".csv"), newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and {"model", "mode", "batch", "clips_per_s", "peak_mib"} <= set(table[0])
    printed = capsys.readouterr().out
    assert "train clips/s (x ViT3D)" in printed and all(name in printed for name in gpu_layouts.MODELS)


def test_out_of_memory_halves_the_batch_and_is_recorded(tmp_path, monkeypatch):
    run = gpu_layouts.Measure.run

    def fails_above_one_clip(self, *args):
        if len(self.video) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return run(self, *args)

    monkeypatch.setattr(gpu_layouts.Measure, "run", fails_above_one_clip)
    out = tmp_path / "g.json"
    gpu_layouts.main(["--device", "cpu", "--tiny", "--models", "vit3d", "--train-frames", "8", "--out", str(out)])
    rows = {r["mode"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["train"]["start_batch"] == 4 and rows["train"]["oom_batches"] == [4, 2]
    assert rows["train"]["batch"] == 1 and rows["train"]["status"] == "ok"
    assert rows["infer"]["oom_batches"] == [2] and rows["infer"]["batch"] == 1


def test_a_spent_budget_measures_nothing_and_still_writes_the_table(tmp_path):
    out = tmp_path / "g.json"
    gpu_layouts.main(["--device", "cpu", "--tiny", "--models", "vit3d", "tome", "--budget", "0", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 4 and all(r["status"] == "budget" for r in rows)
    assert out.with_suffix(".csv").exists()
