"""The generated tables of docs/results.md and README.md: each block equals what ``benchmarks.report`` renders from
results/, every results table is shown, and a missing or hand-edited table is caught."""

from __future__ import annotations

import json

import pytest

from benchmarks import report
from benchmarks.common import RESULTS, write_csv, write_results

EMPTY = "<!-- results:{0} -->\nanything\n<!-- /results:{0} -->\n"


@pytest.mark.parametrize("document", report.DOCUMENTS, ids=lambda p: p.name)
def test_the_generated_blocks_hold_what_results_render(document):
    text = document.read_text(encoding="utf-8")
    assert report.blocks_in(text), f"{document.name} has no generated block"
    rendered = report.render(text)
    stale = [name for name, body in report.blocks_in(rendered).items() if report.blocks_in(text)[name] != body]
    assert not stale, f"{document.name}: blocks {stale} differ from results/; run python -m benchmarks.report"
    assert rendered == text


def test_every_results_table_is_shown_in_a_document():
    shown = {stem for text in (d.read_text(encoding="utf-8") for d in report.DOCUMENTS)
             for name in report.blocks_in(text) for stem, _ in report.BLOCKS[name].sources}
    tables = {path.stem for path in RESULTS.glob("*.csv")}
    assert tables <= shown, f"results tables no document shows: {sorted(tables - shown)}"


def test_every_block_is_used_and_every_table_has_its_json():
    used = {name for d in report.DOCUMENTS for name in report.blocks_in(d.read_text(encoding="utf-8"))}
    assert used == set(report.BLOCKS)
    for path in RESULTS.glob("*.csv"):
        meta = json.loads(report.json_of(path).read_text())
        assert meta["command"].startswith("python -m benchmarks."), path.name
        assert "env" in meta or "transcribed_from" in meta, path.name


def test_a_missing_table_says_so_and_names_its_command(tmp_path):
    text = report.render(EMPTY.format("image-cotraining"), tmp_path)
    assert "`python -m benchmarks.image_cotraining`" in text
    assert "No results yet (results/image_cotraining.csv missing)" in text
    assert "anything" not in text


def test_a_block_shows_the_command_the_table_and_the_machine_of_its_results(tmp_path):
    rows = [{"probe": "TrajAdapter", "config": "configs/adapter.yaml", "task": "count", "epochs": 2,
             "segmenter": "co-trained", "seeds": "0 1", "trainable_params": 12345, "top1_pct_mean": 50.0,
             "top1_pct_se": 1.25, "top1_pct_by_seed": "48.75 51.25"},
            {"probe": "linear probe", "config": "configs/probe_linear.yaml", "task": "count", "epochs": 2,
             "segmenter": "", "seeds": "0 1", "trainable_params": 99, "top1_pct_mean": 40.0, "top1_pct_se": 0.0,
             "top1_pct_by_seed": "40.00 40.00"}]
    env = {"torch": "2.x", "cpu": "x86_64", "threads": 2, "cpu_count": 2, "gpu": None}
    write_results("adapter_probes", {"env": env}, out=tmp_path / "adapter_probes.json", table=rows,
                  command="python -m benchmarks.adapter_probes --seeds 0 1 --epochs 2")
    text = report.render(EMPTY.format("adapter-probes"), tmp_path)
    assert "`python -m benchmarks.adapter_probes --seeds 0 1 --epochs 2`" in text
    assert "| TrajAdapter (segmenter co-trained) | `configs/adapter.yaml` | 12 K | 50.0 ± 1.2 | 48.75, 51.25 |" in text
    assert "| linear probe | `configs/probe_linear.yaml` | 99 | 40.0 ± 0.0 | 40.00, 40.00 |" in text
    assert "Measured on 2 CPU cores (x86_64), torch 2.x, 2 threads." in text
    assert report.render(text, tmp_path) == text  # rendering is idempotent


def test_a_transcribed_table_awaits_a_rerun(tmp_path):
    write_csv([{"stage": "1", "config": "configs/segmenter.yaml", "test_clips": 128, "object_miou": 0.5,
                "objects_found_pct": 50.0, "background_iou": 0.9, "trajectories_per_clip": 3.0,
                "target_trajectories_per_clip": 2.95, "t2v_r1_pct": 1.0, "t2v_r5_pct": 5.0, "t2v_r10_pct": 10.0,
                "t2v_median_rank": 20.0, "t2v_mean_rank": 30.0, "v2t_r1_pct": 1.0, "v2t_r5_pct": 5.0,
                "v2t_r10_pct": 10.0, "v2t_median_rank": 20.0, "v2t_mean_rank": 30.0}], tmp_path / "demo.csv")
    (tmp_path / "demo.json").write_text(json.dumps({"command": "python -m benchmarks.demo",
                                                    "transcribed_from": "somewhere"}))
    text = report.render(EMPTY.format("demo"), tmp_path)
    assert "chance: R@1 0.8, R@5 3.9" in text  # from the test clips' count
    assert "Transcribed from an earlier run, not yet re-run on the current code." in text


def test_a_table_reads_its_own_json_or_the_one_its_benchmark_shares_never_a_namesakes(tmp_path):
    def touch(*names: str) -> None:
        for name in names:
            (tmp_path / name).write_text("{}")

    touch("tokenizer_speed.json", "speed.json", "quality.json", "quality_byte.csv", "speed_224_cpu.csv",
          "tokenizer_speed_attention.csv", "tokenizer_speed_crossover.csv")
    # tokenizer_speed writes one JSON beside its tables.
    assert report.json_of(tmp_path / "tokenizer_speed_attention.csv") == tmp_path / "tokenizer_speed.json"
    touch("tokenizer_speed_crossover.json")
    assert report.json_of(tmp_path / "tokenizer_speed_crossover.csv") == tmp_path / "tokenizer_speed_crossover.json"
    # Another benchmark's (or another run's) JSON whose name is a prefix of the table's is not the table's.
    assert report.json_of(tmp_path / "quality_byte.csv") is None
    assert report.json_of(tmp_path / "speed_224_cpu.csv") is None

    rows = [{"tokenizer": "TrajViT2", "kind": "trajtok", "recipe": "cotrain", "seeds": "0", "t2v_r1_pct_mean": 10.0,
             "t2v_r1_pct_se": 0.0}]
    write_csv(rows, tmp_path / "quality_byte.csv")
    env = {"torch": "2.x", "cpu": "x86_64", "threads": 2, "cpu_count": 2, "gpu": "some GPU"}
    (tmp_path / "quality.json").write_text(json.dumps({"command": "python -m benchmarks.quality --seeds 7",
                                                       "env": env}))
    text = report.render(EMPTY.format("quality-byte"), tmp_path)
    assert "`python -m benchmarks.quality --text-encoder byte`" in text and "--seeds 7" not in text
    assert "The machine is not recorded." in text and "some GPU" not in text


def test_the_crossover_by_dense_work_is_what_tokenizer_speed_timed(tmp_path):
    from benchmarks import tokenizer_speed

    def row(K: int, N: int, segment: float, dense: float, absorbed: float, timed: bool = True) -> dict:
        times = {"segment": segment, "dense": dense, "absorbed": absorbed}
        return {"dim": 128, "heads": 4, "head_dim": 32, "K": K, "N": N, "work": K * N * 128, "timed": timed,
                **({"time_fwd_bwd": {f: {"median_ms": t, "min_ms": t, "n": 5} for f, t in times.items()}}
                   if timed else {})}

    rows = [row(32, 256, 2.0, 1.0, 1.0), row(8, 1024, 2.0, 4.0, 4.0),  # W = 2^20 both
            row(128, 256, 1.0, 3.0, 0.5), row(128, 4096, 0, 0, 0, timed=False)]  # 2^22; the last not timed
    write_csv(tokenizer_speed.crossover_ranges_table(rows), tmp_path / "tokenizer_speed_crossover_ranges.csv")
    env = {"torch": "2.x", "cpu": "x86_64", "threads": 1, "cpu_count": 2, "gpu": None}
    (tmp_path / "tokenizer_speed.json").write_text(json.dumps({"command": "python -m benchmarks.tokenizer_speed "
                                                               "--parts C", "env": env}))
    text = report.render(EMPTY.format("tokenizer-crossover-ranges"), tmp_path)
    assert "`python -m benchmarks.tokenizer_speed --parts C`" in text
    assert "| rotary | segment | 2^20 | 2 | 0.50 to 2.00 |" in text
    assert "| rotary | segment | 2^22 | 1 | 3.00 to 3.00 |" in text
    assert "| rotary-free | absorbed | 2^20 | 2 | 1.00 to 1.00 |" in text
    assert "| rotary-free | absorbed | 2^22 | 1 | 6.00 to 6.00 |" in text
    assert "2^24" not in text  # the configuration that was not timed
    assert "Measured on 2 CPU cores (x86_64), torch 2.x, 1 thread." in text


def test_check_names_a_hand_edited_block_and_changes_nothing(tmp_path, monkeypatch, capsys):
    document = tmp_path / "results.md"
    good = report.render(EMPTY.format("image-cotraining"), tmp_path)
    monkeypatch.setattr(report, "DOCUMENTS", (document,))
    monkeypatch.setattr(report, "ROOT", tmp_path)
    document.write_text(good.replace("No results yet", "Great results"))
    assert report.main(["--check", "--results", str(tmp_path)]) == 1
    assert "results.md: image-cotraining" in capsys.readouterr().err
    assert "Great results" in document.read_text()
    assert report.main(["--results", str(tmp_path)]) == 0
    assert document.read_text() == good
    assert report.main(["--check", "--results", str(tmp_path)]) == 0


def test_an_unknown_block_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="unknown results block 'no-such'"):
        report.render(EMPTY.format("no-such"), tmp_path)
