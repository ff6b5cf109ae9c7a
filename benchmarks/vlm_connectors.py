"""TrajVLM vs the patch-pooling connector on the synthetic QA set, short (8 frames) and long (64 frames) clips.

    python -m benchmarks.vlm_connectors --segmenter-checkpoint runs/segmenter/checkpoints/last.ckpt
                                       [--seeds 0 1 2] [--jobs 1] [--epochs 1] [--out results/vlm_connectors.json]

Each run is the real CLI (``trajtok fit`` then ``trajtok test`` on the last checkpoint, in its own folder under
``results/vlm_connectors/``) of ``configs/vlm.yaml``
(TrajTok with the given pre-trained segmenter, frozen) and ``configs/vlm_patch.yaml`` (the same frozen features
average-pooled to 10 tokens per 8-frame chunk): same LM, connector, data, optimiser, steps and seed. Short clips
read the default set (16-frame videos, 8 frames sampled); long clips a 64-frame version of the synthetic set
(objects cross the same distance over 4x the frames), 256 / 32 / 64 clips, read at 64 frames = 8 chunks.
Reported: multiple-choice accuracy (the most likely option), exact match of greedy answers, and the LLM video
tokens per clip (valid tokens + one separator per chunk), read from the runs' CSV logs. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from benchmarks.common import (
    RESULTS,
    ROOT,
    csv_logger,
    fmt_mean_se,
    logged_metrics,
    metrics_csv,
    run_parallel,
    run_trajtok,
    stage_metrics,
)

CONNECTORS = {"TrajVLM": "vlm", "patch pooling": "vlm_patch"}
LENGTHS = {
    "short (8 frames)": ["--data.init_args.clip.num_frames=8"],
    "long (64 frames)": ["--data.init_args.clip.num_frames=64", "--data.init_args.synthetic.num_frames=64",
                         "--data.init_args.synthetic.train=256", "--data.init_args.synthetic.val=32",
                         "--data.init_args.synthetic.test=64", "--data.init_args.loader.batch_size=8"],
}
METRICS = ("mc_accuracy", "exact_match", "llm_video_tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segmenter-checkpoint", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1 on a 2-core machine)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "results" / "vlm_connectors.json"))
    args = parser.parse_args()

    def run_one(length: str, connector: str, seed: int) -> dict:
        config = CONNECTORS[connector]
        common = ["--config", str(ROOT / "configs" / f"{config}.yaml"), f"--seed_everything={seed}", *LENGTHS[length]]
        fit = [*common, f"--trainer.max_epochs={args.epochs}", "--trainer.limit_val_batches=4", csv_logger(config, "fit")]
        if connector == "TrajVLM":
            fit += [f"--model.tokenizer.init_args.segmenter_checkpoint={Path(args.segmenter_checkpoint).resolve()}",
                    "--model.tokenizer.init_args.freeze_segmenter=true"]
        folder = RESULTS / "vlm_connectors" / f"{config}-{length.split()[0]}-seed{seed}"  # runs can go in parallel
        shutil.rmtree(folder, ignore_errors=True)  # test must read this fit's last.ckpt
        folder.mkdir(parents=True)
        start = time.perf_counter()
        run_trajtok(["fit", *fit], cwd=folder)
        minutes = (time.perf_counter() - start) / 60
        run_trajtok(["test", *common, f"--ckpt_path=runs/{config}/checkpoints/last.ckpt", csv_logger(config, "test")],
                    cwd=folder)
        train, test = (logged_metrics(metrics_csv(folder, config, version)) for version in ("fit", "test"))
        row = {"clips": length, "connector": connector, "seed": seed, "epochs": args.epochs,
               "steps": int(train["step"]) + 1, "fit_minutes": round(minutes, 1),
               **{m: round(v, 2) for m, v in stage_metrics(test, METRICS).items()}}
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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"segmenter_checkpoint": args.segmenter_checkpoint, "runs": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
