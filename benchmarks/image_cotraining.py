"""TrajViT2 with and without image co-training: test video-text retrieval at equal optimisation steps. A benchmark.

    python -m benchmarks.image_cotraining [--steps 60] [--seeds 0] [--out results/image_cotraining.json]

Each run is the real CLI: ``trajtok fit`` for ``--steps`` optimiser steps on ``configs/clip.yaml`` (videos only)
and on ``configs/clip_images.yaml`` (the same model, optimiser, schedule, video batches and seed, plus 64 images
per step: by default the middle frames of a second synthetic set, seed 1), then ``trajtok test`` on the last
checkpoint: t2v / v2t R@1/5/10 on the synthetic test videos. Validation is off (it does not change training, and
costs time). Runs write under ``runs/benchmarks/image_cotraining/``. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from benchmarks.common import (
    RETRIEVAL,
    ROOT,
    csv_logger,
    environment,
    logged_metrics,
    metrics_csv,
    run_trajtok,
    stage_metrics,
    write_results,
)

WORK = ROOT / "runs" / "benchmarks" / "image_cotraining"
RUNS = {"videos": "clip", "videos + images": "clip_images"}  # the config of each; its runs/<name> folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps of every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    rows = []
    for seed in args.seeds:
        for data, name in RUNS.items():
            shutil.rmtree(WORK / "runs" / name, ignore_errors=True)  # test must read this fit's last.ckpt
            WORK.mkdir(parents=True, exist_ok=True)
            common = ["--config", str(ROOT / "configs" / f"{name}.yaml"), f"--seed_everything={seed}"]
            start = time.perf_counter()
            run_trajtok(["fit", *common, f"--trainer.max_steps={args.steps}", "--trainer.max_epochs=-1",
                         "--trainer.limit_val_batches=0", csv_logger(name, "fit")], cwd=WORK)
            minutes = (time.perf_counter() - start) / 60
            run_trajtok(["test", *common, f"--ckpt_path=runs/{name}/checkpoints/last.ckpt", csv_logger(name, "test")],
                        cwd=WORK)
            fit, test = (logged_metrics(metrics_csv(WORK, name, version)) for version in ("fit", "test"))
            final_losses = {k: v for k, v in fit.items() if k.startswith("train/loss")}
            row = {"data": data, "config": f"configs/{name}.yaml", "seed": seed, "steps": args.steps,
                   **stage_metrics(test, RETRIEVAL), "final_losses": final_losses, "fit_minutes": round(minutes, 1)}
            print(row, flush=True)
            rows.append(row)

    print(f"\n{'data':<17}{'seed':>5}" + "".join(f"{d + ' ' + c:>10}" for d in ("t2v", "v2t") for c in ("R@1", "R@5", "R@10")))
    for r in rows:
        print(f"{r['data']:<17}{r['seed']:>5}"
              + "".join(f"{r[f'{d}_{c}']:>10.2f}" for d in ("t2v", "v2t") for c in ("r1", "r5", "r10")))
    write_results("image_cotraining", {"env": environment(), "steps": args.steps, "runs": rows}, out=args.out)


if __name__ == "__main__":
    main()
