"""TrajViT2 with and without image co-training: test video-text retrieval at equal optimisation steps. A benchmark.

    python benchmarks/image_cotraining.py [--steps 60] [--seeds 0] [--out results/image_cotraining.json]

Each run is the real CLI: ``trajtok fit`` for ``--steps`` optimiser steps on ``configs/clip.yaml`` (videos only)
and on ``configs/clip_images.yaml`` (the same model, optimiser, schedule, video batches and seed, plus 64 images
per step: by default the middle frames of a second synthetic set, seed 1), then ``trajtok test`` on the last
checkpoint: t2v / v2t R@1/5/10 on the synthetic test videos. Validation is off (it does not change training, and
costs time). Runs write under ``runs/benchmarks/image_cotraining/``. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAJTOK = str(Path(sys.executable).with_name("trajtok"))
WORK = ROOT / "runs" / "benchmarks" / "image_cotraining"
RUNS = {"videos": "clip", "videos + images": "clip_images"}  # the config of each; its runs/<name> folder
COLUMNS = ("r1", "r5", "r10", "medr", "meanr")


def run(args: list[str]) -> str:
    result = subprocess.run([TRAJTOK, *args], check=False, cwd=WORK, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"trajtok {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def retrieval(test_output: str) -> dict[str, float]:
    """The module's retrieval table (``t2v  R@1 R@5 R@10 MdR MnR``, then ``v2t``) as ``{"t2v_r1": ...}``."""
    metrics = {}
    for direction in ("t2v", "v2t"):
        match = re.search(rf"^{direction}\s+" + r"\s+".join([r"([\d.]+)"] * len(COLUMNS)), test_output, re.MULTILINE)
        if not match:
            raise ValueError(f"no {direction} row in the test output's retrieval table")
        metrics.update({f"{direction}_{c}": float(v) for c, v in zip(COLUMNS, match.groups())})
    return metrics


def last_losses(name: str) -> dict[str, float]:
    """The last logged value of each training loss of a run (``metrics.csv`` of its CSVLogger)."""
    path = WORK / "runs" / name / "logs" / "version_0" / "metrics.csv"
    last: dict[str, float] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            last.update({k: float(v) for k, v in row.items() if k.startswith("train/loss") and v})
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps of every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "image_cotraining.json"))
    args = parser.parse_args()

    rows = []
    for seed in args.seeds:
        for data, name in RUNS.items():
            shutil.rmtree(WORK / "runs" / name, ignore_errors=True)  # test reads this fit's last.ckpt, logs version_0
            WORK.mkdir(parents=True, exist_ok=True)
            common = ["--config", str(ROOT / "configs" / f"{name}.yaml"), f"--seed_everything={seed}"]
            start = time.perf_counter()
            run(["fit", *common, f"--trainer.max_steps={args.steps}", "--trainer.max_epochs=-1",
                 "--trainer.limit_val_batches=0"])
            minutes = (time.perf_counter() - start) / 60
            test_output = run(["test", *common, f"--ckpt_path=runs/{name}/checkpoints/last.ckpt"])
            row = {"data": data, "config": f"configs/{name}.yaml", "seed": seed, "steps": args.steps,
                   **retrieval(test_output), "final_losses": last_losses(name), "fit_minutes": round(minutes, 1)}
            print(row, flush=True)
            rows.append(row)

    print(f"\n{'data':<17}{'seed':>5}" + "".join(f"{d + ' ' + c:>10}" for d in ("t2v", "v2t") for c in ("R@1", "R@5", "R@10")))
    for r in rows:
        print(f"{r['data']:<17}{r['seed']:>5}"
              + "".join(f"{r[f'{d}_{c}']:>10.2f}" for d in ("t2v", "v2t") for c in ("r1", "r5", "r10")))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "runs": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
