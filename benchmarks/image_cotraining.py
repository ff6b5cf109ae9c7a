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
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    ROOT,
    environment,
    retrieval_metrics,
    run_trajtok,
    write_results,
)

WORK = ROOT / "runs" / "benchmarks" / "image_cotraining"
RUNS = {"videos": "clip", "videos + images": "clip_images"}  # the config of each; its runs/<name> folder


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
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    rows = []
    for seed in args.seeds:
        for data, name in RUNS.items():
            shutil.rmtree(WORK / "runs" / name, ignore_errors=True)  # test reads this fit's last.ckpt, logs version_0
            WORK.mkdir(parents=True, exist_ok=True)
            common = ["--config", str(ROOT / "configs" / f"{name}.yaml"), f"--seed_everything={seed}"]
            start = time.perf_counter()
            run_trajtok(["fit", *common, f"--trainer.max_steps={args.steps}", "--trainer.max_epochs=-1",
                 "--trainer.limit_val_batches=0"], cwd=WORK)
            minutes = (time.perf_counter() - start) / 60
            test_output = run_trajtok(["test", *common, f"--ckpt_path=runs/{name}/checkpoints/last.ckpt"], cwd=WORK)
            row = {"data": data, "config": f"configs/{name}.yaml", "seed": seed, "steps": args.steps,
                   **retrieval_metrics(test_output), "final_losses": last_losses(name), "fit_minutes": round(minutes, 1)}
            print(row, flush=True)
            rows.append(row)

    print(f"\n{'data':<17}{'seed':>5}" + "".join(f"{d + ' ' + c:>10}" for d in ("t2v", "v2t") for c in ("R@1", "R@5", "R@10")))
    for r in rows:
        print(f"{r['data']:<17}{r['seed']:>5}"
              + "".join(f"{r[f'{d}_{c}']:>10.2f}" for d in ("t2v", "v2t") for c in ("r1", "r5", "r10")))
    write_results("image_cotraining", {"env": environment(), "steps": args.steps, "runs": rows}, out=args.out)


if __name__ == "__main__":
    main()
