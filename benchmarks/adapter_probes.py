"""TrajAdapter vs linear and attentive probing on the same frozen features: top-1 at equal steps. A benchmark.

    python -m benchmarks.adapter_probes [--seeds 0 1 2] [--jobs 1] [--epochs 5] [--task moving|count] [--attentive-width W]
                                       [--segmenter-checkpoint PATH] [--out results/adapter_probes.json]

Each run is the real CLI (``benchmarks.common.fit_and_test``): ``trajtok fit`` on ``configs/adapter.yaml``,
``configs/probe_linear.yaml`` and ``configs/probe_attentive.yaml`` (same data, frozen feature model, optimiser,
epochs, batch size and seed), then ``trajtok test`` of the last checkpoint, each run in its own folder under
``runs/benchmarks/adapter_probes/``. With ``--segmenter-checkpoint`` (a ``configs/segmenter.yaml`` run), the
adapter uses that pre-trained segmenter frozen, as in the paper, and its trainable parameters are then within
20% of the attentive probe's; without it the segmenter is co-trained, as ``configs/adapter.yaml`` says (then
``--attentive-width 384`` matches the parameter count).
Top-1 and trainable parameter counts (at the start of training) are read from each run's metrics.csv. Prints a
table; writes ``results/adapter_probes.csv`` (one row per probe: trainable parameters, test top-1 in percent, mean
and standard error over seeds) and the JSON beside it with every seed's run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import (
    LOG_TRAINABLE_PARAMS,
    RESULTS,
    RUNS,
    environment,
    fit_and_test,
    fmt_mean_se,
    mean_se_columns,
    run_parallel,
    stage_metrics,
    write_results,
)

PROBES = {"TrajAdapter": "adapter", "linear probe": "probe_linear", "attentive probe": "probe_attentive"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1 on a 2-core machine)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--segmenter-checkpoint", default=None)
    parser.add_argument("--task", choices=["moving", "count"], default="moving", help="the synthetic labels")
    parser.add_argument("--attentive-width", type=int, default=None,
                        help="the attentive probe's width (256 in its config matches the adapter with a frozen "
                             "segmenter; 384 matches the co-trained one)")
    parser.add_argument("--out", type=Path, default=RESULTS / "adapter_probes.json")
    args = parser.parse_args()

    def run_one(probe: str, config: str, seed: int) -> dict:
        common = [f"--seed_everything={seed}", f"--data.init_args.synthetic_task={args.task}"]
        if probe == "TrajAdapter" and args.segmenter_checkpoint:
            common += [f"--model.tokenizer.init_args.segmenter_checkpoint={Path(args.segmenter_checkpoint).resolve()}",
                       "--model.tokenizer.init_args.freeze_segmenter=true", "--model.segmentation=null"]
        if probe == "attentive probe" and args.attentive_width:
            common += [f"--model.head.init_args.width={args.attentive_width}"]
        done = fit_and_test([config], RUNS / "adapter_probes" / f"{config}-seed{seed}", common,
                            fit=[f"--trainer.max_epochs={args.epochs}", LOG_TRAINABLE_PARAMS])
        row = {"probe": probe, "config": f"configs/{config}.yaml", "task": args.task, "seed": seed,
               "epochs": args.epochs, "trainable_params": int(done["fit"]["trainable_params"]),
               **stage_metrics(done["test"], ("top1",)), "fit_minutes": round(done["fit_minutes"], 1)}
        print(row, flush=True)
        return row

    rows = run_parallel([lambda p=p, c=c, s=s: run_one(p, c, s) for s in args.seeds for p, c in PROBES.items()],
                        args.jobs)

    print(f"\n{'probe':<18}{'trainable':>12}{'top-1 (mean ± se)':>20}  per seed")
    for probe in PROBES:
        mine = [r for r in rows if r["probe"] == probe]
        top1 = [r["top1"] for r in mine]
        print(f"{probe:<18}{mine[0]['trainable_params']:>12,}{fmt_mean_se(top1):>20}  "
              + ", ".join(f"{t:.2f}" for t in top1))
    table = []
    for probe, config in PROBES.items():
        mine = [r for r in rows if r["probe"] == probe]
        table.append({"probe": probe, "config": f"configs/{config}.yaml", "task": args.task, "epochs": args.epochs,
                      "segmenter": "pre-trained, frozen" if probe == "TrajAdapter" and args.segmenter_checkpoint
                      else ("co-trained" if probe == "TrajAdapter" else ""),
                      "seeds": " ".join(str(r["seed"]) for r in mine), "trainable_params": mine[0]["trainable_params"],
                      **mean_se_columns("top1_pct", [r["top1"] for r in mine]),
                      "top1_pct_by_seed": " ".join(f"{r['top1']:.2f}" for r in mine)})
    write_results("adapter_probes", {"env": environment(), "segmenter_checkpoint": args.segmenter_checkpoint,
                                     "task": args.task, "runs": rows}, out=args.out, table=table)


if __name__ == "__main__":
    main()
