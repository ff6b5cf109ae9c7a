"""Forward GFLOPs per clip of TrajViT2 and its peers, counted exactly. A benchmark, not a test.

    python -m benchmarks.flops [--frames 8 16 32 64] [--scales cpu vit-b vit-l] [--out results/flops.json]

The video side of the CLIP model (tokenizer + the head's video transformer + projection; the text tower is the
same for all) at each scale of ``benchmarks.common.SCALES``: the CPU configs' (64 px, width 192, depth 4) and the
paper's (224 px, TrajTok ``base`` preset; ViT-B and ViT-L encoders), for T = 8 to 64. Counted with
``FlopCounterMode`` on meta tensors (exact shapes, no compute, machine independent), with the corrections of
``trajtok.flops.CORRECTED_FLOPS`` so that fused attention kernels are not counted as zero. TrajViT2's tokenizer
share is reported separately.

At the 224 px scales the authors' released layout joins them (``TrajViT2 (official)``, ``benchmarks.common.OFFICIAL``,
built from ``trajtok.release.official_model``: transformers' DINOv3 ConvNeXt-S pixel encoder built from its config
on meta, D = 512, K = 128, dense masked attention in the trajectory encoder) with its own head's video transformer
(24 blocks at width 512), so its row is the same under ViT-B and ViT-L; its tokenizer and head FLOPs are reported
separately. Writes ``results/flops.csv`` (one row per scale, T and model: tokens, forward GFLOPs of the whole
model, of its tokenizer and of its head) and the JSON beside it.

RLT's count depends on the content: its encoder is counted over the fraction of tubelets RLT keeps at that T
(measured here and printed) on the embedded default data, whose backgrounds never move (RLT's best case); where
the 24 real MSR-VTT clips of ``../shared/data/msrvtt24`` are present, also over the fraction it keeps on those
at 224 px (row "RLT (real)").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from benchmarks.common import (
    KINDS,
    LABELS,
    LITE,
    MSRVTT24,
    OFFICIAL,
    SCALES,
    build_video_model,
    default_clips,
    environment,
    print_table,
    tubelet_count,
    write_results,
)
from trajtok.flops import count_flops
from trajtok.tokenizer import create_tokenizer
from trajtok.tokens import TrajectoryTokens

NAMES = {**LABELS, "rlt_real": "RLT (real)"}


def rlt_kept_fraction(frames: int, annotations: Path | None = None) -> float:
    """Mean fraction of tubelets RLT keeps at ``frames`` frames: of the default data's test clips (CPU preset,
    64 px), or of the clips of ``annotations`` (base preset, 224 px)."""
    scale, preset = ("cpu", "tiny") if annotations is None else ("vit-b", "base")
    video, _ = default_clips(frames, count=24 if annotations else 64, pixels=SCALES[scale]["pixels"],
                             annotations=annotations)
    with torch.no_grad():
        out = create_tokenizer(preset, "rlt", dim=8)(video)
    return float(out.num_valid.float().mean()) / tubelet_count(scale, frames)


def count_model(kind: str, scale: str, frames: int, kept: float) -> dict:
    model = build_video_model(kind, scale, frames, device="meta")
    pixels = SCALES[scale]["pixels"]
    video = torch.empty(1, frames, 3, pixels, pixels, device="meta")
    if kind == "rlt":  # meta tensors have no content: embed every tubelet, encode the kept ones
        kept_tokens = round(kept * tubelet_count(scale, frames))
        tokenizer = count_flops(lambda: model.tokenizer.embed(video))
        tokens = torch.empty(1, kept_tokens, model.tokenizer.out_dim, device="meta")
        valid = torch.ones(1, kept_tokens, dtype=torch.bool, device="meta")
        labels = torch.empty(1, 1, 1, 1, dtype=torch.long, device="meta")
        head = count_flops(lambda: model.head.encode_video(TrajectoryTokens(tokens, valid, None, labels, (1, 1, 1))))
        return {"total": tokenizer + head, "tokenizer": tokenizer, "tokens": kept_tokens}
    out = model.tokenizer(video)
    tokenizer = count_flops(lambda: model.tokenizer(video))
    return {"total": count_flops(lambda: model(video)), "tokenizer": tokenizer, "tokens": out.tokens.shape[1]}


def plot(results: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    scales = list(results["scales"])
    fig, axes = plt.subplots(1, len(scales), figsize=(5.5 * len(scales), 4.2), squeeze=False)
    for ax, scale in zip(axes[0], scales):
        rows = [r for r in results["rows"] if r["scale"] == scale]
        for kind, name in NAMES.items():
            mine = [r for r in rows if r["kind"] == kind]
            if mine:
                ax.plot([r["T"] for r in mine], [r["gflops"] for r in mine], "o-", label=name)
        trajtok = [r for r in rows if r["kind"] == "trajtok"]
        ax.plot([r["T"] for r in trajtok], [r["tokenizer_gflops"] for r in trajtok], "k:", label="TrajTok tokenizer")
        ax.set(xlabel="T (frames)", ylabel="forward GFLOPs per clip", xscale="log", yscale="log", title=scale)
        ax.set_xticks(results["frames"], [str(t) for t in results["frames"]])
        ax.minorticks_off()
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    kept = {"rlt": {T: rlt_kept_fraction(T) for T in args.frames}}
    if MSRVTT24.exists():
        kept["rlt_real"] = {T: rlt_kept_fraction(T, MSRVTT24) for T in args.frames}
    columns = {scale: [*KINDS, LITE, *(["rlt_real"] if "rlt_real" in kept else []),
                       *([OFFICIAL] if SCALES[scale]["pixels"] == 224 else [])] for scale in args.scales}
    rows, official = [], {}  # official: its counts by T (the same model at every 224 px scale)
    for scale in args.scales:
        for T in args.frames:
            for kind in columns[scale]:
                if kind == OFFICIAL and T in official:
                    counted = official[T]
                else:
                    counted = count_model(kind.removesuffix("_real"), scale, T, kept.get(kind, kept["rlt"])[T])
                    if kind == OFFICIAL:
                        official[T] = counted
                rows.append({"scale": scale, "T": T, "kind": kind, "tokens": counted["tokens"],
                             "gflops": counted["total"] / 1e9, "tokenizer_gflops": counted["tokenizer"] / 1e9,
                             "head_gflops": (counted["total"] - counted["tokenizer"]) / 1e9})
                print(f"  {scale} T={T} {kind}: {counted['total'] / 1e9:.1f} GFLOPs", file=sys.stderr, flush=True)
    results = {"env": environment(), "frames": args.frames, "scales": args.scales, "rlt_kept_fraction": kept,
               "rows": rows, "notes": ["forward FLOPs (2 x multiply-adds) per clip, batch 1; video side only",
                                       "RLT: encoder over the kept fraction measured on the default data",
                                       "head_gflops: the head's video transformer and projection (total - tokenizer)",
                                       f"{OFFICIAL}: the released layout, its own head at every 224 px scale"]}

    for kind, data in (("rlt", "the default data"), ("rlt_real", "the 24 real MSR-VTT clips")):
        if kind in kept:
            print("\nRLT keeps " + ", ".join(f"{100 * f:.0f}% at T={T}" for T, f in kept[kind].items())
                  + f" of the tubelets of {data}")
    for scale in args.scales:
        table = []
        layouts = ["trajtok", LITE, *([OFFICIAL] if OFFICIAL in columns[scale] else [])]
        for T in args.frames:
            by_kind = {r["kind"]: r for r in rows if r["scale"] == scale and r["T"] == T}
            base = by_kind["vit3d"]["gflops"]
            share = [f"{by_kind[k]['tokenizer_gflops']:.1f} ({100 * by_kind[k]['tokenizer_gflops'] / by_kind[k]['gflops']:.0f}%)"
                     for k in layouts]
            head = [f"{by_kind[OFFICIAL]['head_gflops']:.1f}"] if OFFICIAL in layouts else []
            table.append([str(T)] + [f"{by_kind[k]['gflops']:.1f} ({by_kind[k]['tokens']})" for k in columns[scale]]
                         + share + head + [f"{by_kind[k]['gflops'] / base:.2f}" for k in layouts]
                         + [f"{by_kind[LITE]['gflops'] / by_kind['tome']['gflops']:.2f}"])
        s = SCALES[scale]
        official_header = (["official tokenizer (share)", "official head"] if OFFICIAL in layouts else [])
        print_table(f"{scale}: {s['pixels']} px, TrajTok '{s['preset']}' and '{s['lite_preset']}', encoder width "
                    f"{s['width']} depth {s['depth']}" + (" (official: its own head, 24 x 512)" if OFFICIAL in layouts
                                                           else "") + " - forward GFLOPs per clip (tokens)",
                    ["T", *(NAMES[k] for k in columns[scale]), "TrajTok tokenizer (share)", "lite tokenizer (share)",
                     *official_header, "TrajViT2 / ViT3D", "lite / ViT3D",
                     *(["official / ViT3D"] if OFFICIAL in layouts else []), "lite / ToMe"], table)
    table = [{"scale": r["scale"], "pixels": SCALES[r["scale"]]["pixels"], "frames": r["T"], "model": r["kind"],
              "label": NAMES[r["kind"]], "tokens_per_clip": r["tokens"], "forward_gflops": round(r["gflops"], 4),
              "tokenizer_forward_gflops": round(r["tokenizer_gflops"], 4), "head_forward_gflops": round(r["head_gflops"], 4),
              "kept_tubelets_pct": round(100 * kept[r["kind"]][r["T"]], 2) if r["kind"] in kept else None}
             for r in rows]
    write_results("flops", results, plot, args.out, table=table)


if __name__ == "__main__":
    main()
