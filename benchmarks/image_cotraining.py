"""TrajViT2 with and without image co-training: test video-text retrieval at equal optimisation steps. A benchmark.

    python -m benchmarks.image_cotraining [--steps 60] [--seeds 0] [--out results/image_cotraining.json]

Each run is the real CLI (``benchmarks.common.fit_and_test``): ``trajtok fit`` for ``--steps`` optimiser steps on
``configs/clip.yaml`` (videos only) and on ``configs/clip_images.yaml`` (the same model, optimiser, schedule, video
batches and seed, plus 64 images per step: by default the middle frames of a second synthetic set, seed 1), then
``trajtok test`` of the last checkpoint: t2v / v2t R@1/5/10 on the synthetic test videos. Validation is off (it does
not change training, and costs time). Runs write under ``runs/benchmarks/image_cotraining/``. Prints a table;
writes ``results/image_cotraining.csv`` (one row per training data: recall in percent, mean and standard error over
seeds) and the JSON beside it with every seed's run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import (
    RETRIEVAL,
    RUNS,
    environment,
    fit_and_test,
    mean_se_columns,
    stage_metrics,
    write_results,
)

DATA = {"videos": "clip", "videos + images": "clip_images"}  # the config of each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps of every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    rows = []
    for seed in args.seeds:
        for data, name in DATA.items():
            done = fit_and_test([name], RUNS / "image_cotraining" / f"{name}-seed{seed}", [f"--seed_everything={seed}"],
                                fit=[f"--trainer.max_steps={args.steps}", "--trainer.max_epochs=-1",
                                     "--trainer.limit_val_batches=0"])
            final_losses = {k: v for k, v in done["fit"].items() if k.startswith("train/loss")}
            row = {"data": data, "config": f"configs/{name}.yaml", "seed": seed, "steps": args.steps,
                   **stage_metrics(done["test"], RETRIEVAL), "final_losses": final_losses,
                   "fit_minutes": round(done["fit_minutes"], 1)}
            print(row, flush=True)
            rows.append(row)

    print(f"\n{'data':<17}{'seed':>5}" + "".join(f"{d + ' ' + c:>10}" for d in ("t2v", "v2t") for c in ("R@1", "R@5", "R@10")))
    for r in rows:
        print(f"{r['data']:<17}{r['seed']:>5}"
              + "".join(f"{r[f'{d}_{c}']:>10.2f}" for d in ("t2v", "v2t") for c in ("r1", "r5", "r10")))
    table = []
    for data, name in DATA.items():
        mine = [r for r in rows if r["data"] == data]
        table.append({"data": data, "config": f"configs/{name}.yaml", "steps": args.steps,
                      "seeds": " ".join(str(r["seed"]) for r in mine),
                      **{k: v for metric in ("t2v_r1", "t2v_r5", "t2v_r10", "v2t_r1", "v2t_r5", "v2t_r10")
                         for k, v in mean_se_columns(f"{metric}_pct", [r[metric] for r in mine]).items()},
                      **mean_se_columns("t2v_median_rank", [r["t2v_medr"] for r in mine])})
    write_results("image_cotraining", {"env": environment(), "steps": args.steps, "runs": rows}, out=args.out,
                  table=table)


if __name__ == "__main__":
    main()
