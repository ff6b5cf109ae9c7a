"""Retrieval quality of TrajViT2 and its peers trained the same way on the default data. A benchmark.

    python -m benchmarks.quality [--epochs 5] [--seeds 0 1 2] [--kinds trajtok vit3d ...] [--jobs 1]
                                [--text-encoder minilm|byte] [--trajtok-recipe cotrain|scratch] [--layout lite]
                                [--frames F] [--out PATH]

Each run is the real CLI, in its own folder under ``results/quality/`` (so runs can go ``--jobs`` at a time):
``trajtok fit`` then ``trajtok test`` on the last checkpoint, text-to-video and video-to-text R@1/5/10 on the 128
test clips, read back from the runs' metrics.csv (``runs/<config>/logs/{fit,test}/``). The peers fit
``configs/clip.yaml`` composed with ``configs/peers/<kind>.yaml``: same data, head, text encoder, optimiser,
epochs, batch size and seed; only the tokenizer differs (and ToMe's merging blocks replace half the head's).
TrajViT2 follows the paper's recipe (``--trajtok-recipe cotrain``, the default): segmenter pre-training
(``configs/segmenter.yaml``, its own seed), then ``configs/clip_cotrain.yaml`` warm-started from it, contrastive +
0.5 focal + 1.0 Dice, for the same epochs as the peers; ``scratch`` fits ``configs/clip.yaml`` alone. The
segmenter's test quality (object mIoU, trajectories found) is recorded for each seed.
``--text-encoder byte`` swaps the configs' pretrained MiniLM for the byte-level encoder trained from scratch.
``--layout NAME`` composes ``configs/layouts/NAME.yaml`` into every TrajViT2 run (both stages of the recipe).
``--frames F`` trains and tests the contrastive stage on clips of F frames (the synthetic videos have 16); the
segmenter pre-trains on its config's 8, as objects are learnt per frame (a layout that changes only long clips,
such as ``lite``'s capped context, then starts from the paper layout's segmenter, seed for seed).
Reports the mean and standard error over seeds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import (
    KINDS,
    LABELS,
    LOG_TRAINABLE_PARAMS,
    RESULTS,
    RETRIEVAL,
    ROOT,
    SEGMENTATION,
    csv_logger,
    environment,
    fmt_mean_se,
    logged_metrics,
    metrics_csv,
    print_table,
    run_parallel,
    run_trajtok,
    stage_metrics,
    write_results,
)

TEXT_ENCODERS = {"minilm": "heads.MiniLMTextEncoder", "byte": "heads.ByteTextEncoder"}


def config_args(*names: str) -> list[str]:
    return [arg for name in names for arg in ("--config", str(ROOT / "configs" / f"{name}.yaml"))]


def run_one(kind: str, seed: int, epochs: int, text_encoder: str, recipe: str, layout: str | None = None,
            frames: int | None = None) -> dict:
    """Fit and test one tokenizer at one seed in a fresh folder; the run's numbers."""
    layout = layout if kind == "trajtok" else None
    folder = RESULTS / "quality" / f"{kind}{f'-{layout}' if layout else ''}{f'-{frames}f' if frames else ''}-{text_encoder}-seed{seed}"
    overlay = config_args(f"layouts/{layout}") if layout else []
    shutil.rmtree(folder, ignore_errors=True)  # test must read this fit's checkpoints
    folder.mkdir(parents=True)
    seeded = [f"--seed_everything={seed}"]
    run = {"kind": kind, "seed": seed, "epochs": epochs, "text_encoder": text_encoder, "layout": layout, "frames": frames}
    start = time.perf_counter()
    if kind == "trajtok" and recipe == "cotrain":
        segmenter = [*config_args("segmenter"), *overlay, *seeded]
        run_trajtok(["fit", *segmenter], cwd=folder)
        run_trajtok(["test", *segmenter, "--ckpt_path=runs/segmenter/checkpoints/last.ckpt",
                     csv_logger("segmenter", "test")], cwd=folder)
        stage1 = logged_metrics(metrics_csv(folder, "segmenter", "test"))
        run["segmenter"] = stage_metrics(stage1, SEGMENTATION, optional=("seg_background_iou",))
        run["segmenter_minutes"] = round((time.perf_counter() - start) / 60, 1)
        model, name = config_args("clip_cotrain") + overlay, "clip_cotrain"
    else:
        model = config_args("clip") + (overlay if kind == "trajtok" else config_args(f"peers/{kind}"))
        name = "clip"
    common = [*model, *seeded, f"--model.head.init_args.text_encoder={TEXT_ENCODERS[text_encoder]}"]
    if frames:
        common.append(f"--data.init_args.clip.num_frames={frames}")
    fit_start = time.perf_counter()
    run_trajtok(["fit", *common, f"--trainer.max_epochs={epochs}", LOG_TRAINABLE_PARAMS, csv_logger(name, "fit")],
                cwd=folder)
    run["fit_minutes"] = round((time.perf_counter() - fit_start) / 60, 1)
    run_trajtok(["test", *common, f"--ckpt_path=runs/{name}/checkpoints/last.ckpt", csv_logger(name, "test")],
                cwd=folder)
    fit, test = (logged_metrics(metrics_csv(folder, name, version)) for version in ("fit", "test"))
    run.update(trainable_params=int(fit["trainable_params"]), **stage_metrics(test, ("tokens", *RETRIEVAL)))
    if kind == "trajtok" and recipe == "cotrain":
        run["cotrained"] = stage_metrics(test, SEGMENTATION, optional=("seg_background_iou",))
    print(run, file=sys.stderr, flush=True)
    return run


def plot(results: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for kind in results["kinds"]:
        mine = [r for r in results["runs"] if r["kind"] == kind]
        ax.scatter([r["tokens"] for r in mine], [r["t2v_r5"] for r in mine], label=LABELS[kind], s=40)
    ax.set(xlabel="valid tokens per clip (test)", ylabel="text-to-video R@5", xscale="log",
           title=f"retrieval after {results['epochs']} epochs on the default data ({results['text_encoder']} text)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1 on a 2-core machine)")
    parser.add_argument("--text-encoder", choices=list(TEXT_ENCODERS), default="minilm")
    parser.add_argument("--trajtok-recipe", choices=["cotrain", "scratch"], default="cotrain")
    parser.add_argument("--layout", choices=sorted(p.stem for p in (ROOT / "configs" / "layouts").glob("*.yaml")),
                        help="a configs/layouts/ overlay for TrajViT2's runs (default: the configs' own layout)")
    parser.add_argument("--frames", type=int, default=None,
                        help="clip length of the contrastive stage, train and test (default: the configs' 8)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    jobs = [lambda kind=kind, seed=seed: run_one(kind, seed, args.epochs, args.text_encoder, args.trajtok_recipe,
                                                 args.layout, args.frames)
            for seed in args.seeds for kind in args.kinds]
    runs = run_parallel(jobs, args.jobs)

    table = []
    for kind in args.kinds:
        mine = [r for r in runs if r["kind"] == kind]
        table.append([LABELS[kind], f"{mine[0]['trainable_params'] / 1e6:.2f}M",
                      fmt_mean_se([r["tokens"] for r in mine], 1),
                      *(fmt_mean_se([r[k] for r in mine]) for k in ("t2v_r1", "t2v_r5", "t2v_r10", "v2t_r1", "v2t_r5")),
                      fmt_mean_se([r["fit_minutes"] for r in mine], 1)])
    print_table(f"test retrieval after {args.epochs} epochs ({args.text_encoder} text encoder, TrajViT2 "
                f"{args.trajtok_recipe}{f', layout {args.layout}' if args.layout else ''}"
                f"{f', {args.frames} frames' if args.frames else ''}), mean ± standard error over seeds {args.seeds}",
                ["tokenizer", "params", "tokens/clip", "t2v R@1", "t2v R@5", "t2v R@10", "v2t R@1", "v2t R@5",
                 "fit min"], table)
    segmenters = [r["segmenter"] for r in runs if "segmenter" in r]
    if segmenters:
        print_table("segmenter pre-training (configs/segmenter.yaml), test quality over the same seeds",
                    ["object mIoU", "found", "background IoU", "predicted / clip", "target / clip"],
                    [[fmt_mean_se([m[k] for m in segmenters], 3) for k in
                      ("seg_miou", "seg_found", "seg_background_iou", "seg_pred_trajectories", "seg_target_trajectories")]])
    write_results("quality", {"env": environment(), "epochs": args.epochs, "seeds": args.seeds,
                              "kinds": args.kinds, "text_encoder": args.text_encoder,
                              "trajtok_recipe": args.trajtok_recipe, "layout": args.layout, "frames": args.frames,
                              "runs": runs}, plot,
                  args.out or RESULTS / f"quality_{args.text_encoder}{f'_{args.layout}' if args.layout else ''}"
                                        f"{f'_{args.frames}f' if args.frames else ''}.json")


if __name__ == "__main__":
    main()
