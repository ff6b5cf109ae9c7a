"""TrajVLM vs the patch-pooling connector on the synthetic QA set, short (8 frames) and long (64 frames) clips.

    python -m benchmarks.vlm_connectors --segmenter-checkpoint runs/segmenter/checkpoints/last.ckpt
                                       [--seeds 0 1 2] [--jobs 1] [--epochs 1] [--out results/vlm_connectors.json]

Each run is the real CLI (``benchmarks.common.fit_and_test``: ``trajtok fit`` then ``trajtok test`` of the last
checkpoint, in its own folder under ``runs/benchmarks/vlm_connectors/``) of ``configs/vlm.yaml``
(TrajTok with the given pre-trained segmenter, frozen) and ``configs/vlm_patch.yaml`` (the same frozen features
average-pooled to 10 tokens per 8-frame chunk): same LM, connector, data, optimiser, steps and seed. Short clips
read the default set (16-frame videos, 8 frames sampled); long clips a 64-frame version of the synthetic set
(objects cross the same distance over 4x the frames), 256 / 32 / 64 clips, read at 64 frames = 8 chunks.
Reported: multiple-choice accuracy (the most likely option), exact match of greedy answers, and the LLM video
tokens per clip (valid tokens + one separator per chunk), read from the runs' CSV logs. Prints a table; writes
``results/vlm_connectors.csv`` (one row per clip length and connector: mean and standard error over seeds, accuracy
in percent) and the JSON beside it with every seed's run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import (
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

CONNECTORS = {"TrajVLM": "vlm", "patch pooling": "vlm_patch"}
LENGTHS = {
    "short (8 frames)": ["--data.init_args.clip.num_frames=8"],
    "long (64 frames)": ["--data.init_args.clip.num_frames=64", "--data.init_args.synthetic.num_frames=64",
                         "--data.init_args.synthetic.train=256", "--data.init_args.synthetic.val=32",
                         "--data.init_args.synthetic.test=64", "--data.init_args.loader.batch_size=8"],
}
FRAMES = {"short (8 frames)": 8, "long (64 frames)": 64}
METRICS = ("mc_accuracy", "exact_match", "llm_video_tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segmenter-checkpoint", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1 on a 2-core machine)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "vlm_connectors.json")
    args = parser.parse_args()

    def run_one(length: str, connector: str, seed: int) -> dict:
        config = CONNECTORS[connector]
        fit = [f"--trainer.max_epochs={args.epochs}", "--trainer.limit_val_batches=4"]
        if connector == "TrajVLM":
            fit += [f"--model.tokenizer.init_args.segmenter_checkpoint={Path(args.segmenter_checkpoint).resolve()}",
                    "--model.tokenizer.init_args.freeze_segmenter=true"]
        done = fit_and_test([config], RUNS / "vlm_connectors" / f"{config}-{length.split()[0]}-seed{seed}",
                            [f"--seed_everything={seed}", *LENGTHS[length]], fit=fit)
        row = {"clips": length, "connector": connector, "seed": seed, "epochs": args.epochs,
               "steps": int(done["fit"]["step"]) + 1, "fit_minutes": round(done["fit_minutes"], 1),
               **{m: round(v, 2) for m, v in stage_metrics(done["test"], METRICS).items()}}
        print(row, flush=True)
        return row

    rows = run_parallel([lambda length=length, connector=connector, seed=seed: run_one(length, connector, seed)
                         for seed in args.seeds for length in LENGTHS for connector in CONNECTORS], args.jobs)

    print(f"\n{'clips':<18}{'connector':<15}{'MC acc':>16}{'exact':>16}{'LLM video tokens':>18}")
    for length in LENGTHS:
        for connector in CONNECTORS:
            mine = [r for r in rows if r["clips"] == length and r["connector"] == connector]
            print(f"{length:<18}{connector:<15}{fmt_mean_se([r['mc_accuracy'] for r in mine]):>16}"
                  f"{fmt_mean_se([r['exact_match'] for r in mine]):>16}"
                  f"{fmt_mean_se([r['llm_video_tokens'] for r in mine], 1):>18}")
    table = []
    for length in LENGTHS:
        for connector, config in CONNECTORS.items():
            mine = [r for r in rows if r["clips"] == length and r["connector"] == connector]
            table.append({"clips": length, "frames": FRAMES[length], "connector": connector,
                          "config": f"configs/{config}.yaml", "epochs": args.epochs, "steps": mine[0]["steps"],
                          "seeds": " ".join(str(r["seed"]) for r in mine),
                          **mean_se_columns("llm_video_tokens_per_clip", [r["llm_video_tokens"] for r in mine]),
                          **mean_se_columns("mc_accuracy_pct", [r["mc_accuracy"] for r in mine]),
                          **mean_se_columns("exact_match_pct", [r["exact_match"] for r in mine]),
                          "mc_accuracy_pct_by_seed": " ".join(f"{r['mc_accuracy']:.2f}" for r in mine)})
    write_results("vlm_connectors", {"env": environment(), "segmenter_checkpoint": args.segmenter_checkpoint,
                                     "runs": rows}, out=args.out, table=table)


if __name__ == "__main__":
    main()
