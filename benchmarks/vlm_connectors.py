"""TrajVLM vs the patch-pooling connector on synthetic QA: the default set, short (8 frames) and long (64 frames)
clips, or the motion test set's questions, per question type beside the answer prior.

    python -m benchmarks.vlm_connectors --segmenter-checkpoint runs/segmenter/checkpoints/last.ckpt
                                       [--data default|motion] [--frames 8 64] [--seeds 0 1 2] [--jobs 1]
                                       [--epochs 1] [--out results/vlm_connectors.json]

Each run is the real CLI (``benchmarks.common.fit_and_test``: ``trajtok fit`` then ``trajtok test`` of the last
checkpoint, in its own folder under ``runs/benchmarks/vlm_connectors/``) of ``configs/vlm.yaml``
(TrajTok with the given pre-trained segmenter, frozen) and ``configs/vlm_patch.yaml`` (the same frozen features
average-pooled to 10 tokens per 8-frame chunk): same LM, connector, data, optimiser, steps and seed.

``--data default`` (the default) reads the default QA set: short clips read its 16-frame videos (8 frames sampled);
long clips a 64-frame version of the set (objects cross the same distance over 4x the frames), 256 / 32 / 64 clips,
read at 64 frames = 8 chunks. ``--data motion`` composes ``configs/synthetic/motion.yaml`` after each model config:
the questions of ``datamodules.qa_motion`` (counting, turn order, identity, occlusion, the camera; answers balanced
per type), at the set's sizes; by default all 16 frames of its videos, and a 64-frame version of the set
(``configs/synthetic/motion64.yaml``'s) read whole. ``--frames`` picks the clip lengths of either; a length above
the set's 16 frames renders a set of that length.

Reported: multiple-choice accuracy (the most likely option), exact match of greedy answers, and the LLM video tokens
per clip (valid tokens + one separator per chunk), read from the runs' CSV logs; for the motion set also the
accuracy per question type and the answer prior's (each type and option set's most frequent answer in the test split:
``test/prior_accuracy_<type>``), overall and per type. Prints a table; writes ``results/vlm_connectors.csv``
(``results/vlm_connectors_motion.csv`` for the motion set; one row per clip length and connector: mean and standard
error over seeds, accuracy in percent) and the JSON beside it with every seed's run.
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
from datamodules.qa_motion import TYPES

CONNECTORS = {"TrajVLM": "vlm", "patch pooling": "vlm_patch"}
#: The data config composed after each connector's, by ``--data``.
DATA = {"default": [], "motion": ["synthetic/motion"]}
#: The clip lengths run when ``--frames`` is not given.
DEFAULT_FRAMES = {"default": [8, 64], "motion": [16, 64]}
#: Frames per video of each set as its config makes it: a longer read renders a longer version of the set.
SET_FRAMES = {"default": 16, "motion": 16}
#: The long default set's sizes: its videos are 4x as long as the default's, so fewer of them.
LONG_DEFAULT_SIZES = ["--data.init_args.synthetic.train=256", "--data.init_args.synthetic.val=32",
                      "--data.init_args.synthetic.test=64"]
METRICS = ("mc_accuracy", "exact_match", "llm_video_tokens")
#: What the head logs per question type on data whose questions have types (the motion set).
TYPED_METRICS = tuple(f"{kind}_{t}" for t in TYPES for kind in ("mc_accuracy", "prior_accuracy"))


def clips_label(frames: int) -> str:
    """A clip length as the table names it: "short (8 frames)", "long (64 frames)"."""
    return f"{'short' if frames <= 16 else 'long'} ({frames} frames)"


def data_overrides(data: str, frames: int) -> list[str]:
    """The options that make a run read ``frames`` frames per clip of ``data``: more than its videos hold renders a
    set of that length, read 8 clips per batch (the long default set at ``LONG_DEFAULT_SIZES``)."""
    out = [f"--data.init_args.clip.num_frames={frames}"]
    if frames > SET_FRAMES[data]:
        out.append(f"--data.init_args.synthetic.num_frames={frames}")
        out += LONG_DEFAULT_SIZES if data == "default" else []
        out.append("--data.init_args.loader.batch_size=8")
    return out


def run_name(config: str, data: str, frames: int, seed: int) -> str:
    """A run's folder under ``runs/benchmarks/vlm_connectors/``."""
    return f"{config}-{data}-{frames}f-seed{seed}"


def typed_columns(mine: list[dict]) -> dict[str, float | str]:
    """The per-type table columns of one clip length and connector's seeds: the overall answer prior, and each type's
    accuracy and prior (``<metric>_pct_mean`` / ``_se``), blank where a seed did not log it (a type the test split
    does not ask)."""
    out: dict[str, float | str] = {}
    for name in ("prior_accuracy", *TYPED_METRICS):
        values = [r.get(name) for r in mine]
        if None in values:
            out.update({f"{name}_pct_mean": "", f"{name}_pct_se": ""})
        else:
            out.update(mean_se_columns(f"{name}_pct", values))
    return out


def table_row(mine: list[dict], data: str, config: str, epochs: int) -> dict:
    """The table row of one clip length and connector over its seeds' runs ``mine``. The default set's rows hold the
    columns they always did; the motion set's add ``data`` and the per-type columns (``typed_columns``)."""
    first = mine[0]
    configs = " + ".join(f"configs/{c}.yaml" for c in (config, *DATA[data]))
    row = {"clips": first["clips"], "frames": first["frames"], **({"data": data} if data != "default" else {}),
           "connector": first["connector"], "config": configs, "epochs": epochs, "steps": first["steps"],
           "seeds": " ".join(str(r["seed"]) for r in mine),
           **mean_se_columns("llm_video_tokens_per_clip", [r["llm_video_tokens"] for r in mine]),
           **mean_se_columns("mc_accuracy_pct", [r["mc_accuracy"] for r in mine]),
           **mean_se_columns("exact_match_pct", [r["exact_match"] for r in mine]),
           "mc_accuracy_pct_by_seed": " ".join(f"{r['mc_accuracy']:.2f}" for r in mine)}
    return {**row, **(typed_columns(mine) if data != "default" else {})}


def print_summary(rows: list[dict], data: str) -> None:
    """Every clip length and connector's scores over seeds; per type (accuracy, then the prior) on typed data."""
    print(f"\n{'clips':<18}{'connector':<15}{'MC acc':>16}{'exact':>16}{'LLM video tokens':>18}")
    for length in dict.fromkeys(r["clips"] for r in rows):
        for connector in CONNECTORS:
            mine = [r for r in rows if r["clips"] == length and r["connector"] == connector]
            print(f"{length:<18}{connector:<15}{fmt_mean_se([r['mc_accuracy'] for r in mine]):>16}"
                  f"{fmt_mean_se([r['exact_match'] for r in mine]):>16}"
                  f"{fmt_mean_se([r['llm_video_tokens'] for r in mine], 1):>18}")
            if data == "default":
                continue
            for t in ("", *TYPES):
                suffix = f"_{t}" if t else ""
                if all(f"mc_accuracy{suffix}" in r for r in mine):
                    accuracy = fmt_mean_se([r[f"mc_accuracy{suffix}"] for r in mine])
                    prior = fmt_mean_se([r[f"prior_accuracy{suffix}"] for r in mine])
                    print(f"{'':<18}{'  ' + (t or 'all types'):<15}{accuracy:>16}   prior {prior}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segmenter-checkpoint", required=True)
    parser.add_argument("--data", choices=sorted(DATA), default="default",
                        help="default: the default QA set; motion: configs/synthetic/motion.yaml's questions")
    parser.add_argument("--frames", type=int, nargs="+", help="clip lengths (default: 8 64; motion: 16 64)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1 on a 2-core machine)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, help="default results/vlm_connectors.json (motion: ..._motion.json)")
    args = parser.parse_args(argv)
    frames_list = args.frames or DEFAULT_FRAMES[args.data]
    name = "vlm_connectors" if args.data == "default" else f"vlm_connectors_{args.data}"
    typed = args.data != "default"

    def run_one(frames: int, connector: str, seed: int) -> dict:
        config = CONNECTORS[connector]
        fit = [f"--trainer.max_epochs={args.epochs}", "--trainer.limit_val_batches=4"]
        if connector == "TrajVLM":
            fit += [f"--model.tokenizer.init_args.segmenter_checkpoint={Path(args.segmenter_checkpoint).resolve()}",
                    "--model.tokenizer.init_args.freeze_segmenter=true"]
        run_dir = RUNS / "vlm_connectors" / run_name(config, args.data, frames, seed)
        done = fit_and_test([config, *DATA[args.data]], run_dir,
                            [f"--seed_everything={seed}", *data_overrides(args.data, frames)], fit=fit)
        logged = stage_metrics(done["test"], (*METRICS, "prior_accuracy") if typed else METRICS,
                               optional=TYPED_METRICS if typed else ())
        row = {"clips": clips_label(frames), "frames": frames, **({"data": args.data} if typed else {}),
               "connector": connector, "seed": seed, "epochs": args.epochs, "steps": int(done["fit"]["step"]) + 1,
               "fit_minutes": round(done["fit_minutes"], 1), **{m: round(v, 2) for m, v in logged.items()}}
        print(row, flush=True)
        return row

    rows = run_parallel([lambda frames=frames, connector=connector, seed=seed: run_one(frames, connector, seed)
                         for seed in args.seeds for frames in frames_list for connector in CONNECTORS], args.jobs)
    print_summary(rows, args.data)
    table = [table_row([r for r in rows if r["frames"] == frames and r["connector"] == connector], args.data, config,
                       args.epochs)
             for frames in frames_list for connector, config in CONNECTORS.items()]
    write_results(name, {"env": environment(), "segmenter_checkpoint": args.segmenter_checkpoint, "runs": rows},
                  out=args.out or RESULTS / f"{name}.json", table=table)


if __name__ == "__main__":
    main()
