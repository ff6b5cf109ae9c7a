"""Parity of ``trajtok.segmentation.video_quality`` with the official TrajTok ``seg_metric.py`` (not part of CI).

The official file (``segmenter/trajtok_segmenter/eval/seg_metric.py`` of github.com/hellomuffin/trajtok) is loaded
by path from a checkout you give, so nothing of it is copied here; it needs only torch and scipy, which this
project's environment has. Both are run on hand-made videos and on random ones (ground-truth boxes moving over a
few frames, void pixels, predictions made on a coarse grid and nearest-upsampled as the segmenter's are, with
noise, splits, merges and up to 128 trajectory ids, id 0 among them), in both forms:

- official form: ``video_quality(..., drop_predicted_zero=True)`` against the drivers' call, ground truth 255
  made 0, then ``veq_scores`` / ``stq_en`` with ``ignore_id=0``;
- standard form: ``video_quality(...)`` against the same official call on the predicted ids shifted by one, so
  that ``ignore_id=0`` drops no predicted trajectory (a shift renames tubes, changes none, and keeps their order).

It prints the largest absolute difference of VEQ, STQ_EN and their parts per form, and exits non-zero above
``--tolerance``. Run it from the repository root:

    git --git-dir=<mirror of hellomuffin/trajtok> archive HEAD segmenter/trajtok_segmenter/eval | tar -x -C /tmp/official
    .venv/bin/python tools/parity_video_quality.py --official /tmp/official
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trajtok.segmentation.video_quality import tube_overlaps, video_quality

OFFICIAL_FILE = "segmenter/trajtok_segmenter/eval/seg_metric.py"


def load_official(checkout: Path):
    path = checkout / OFFICIAL_FILE
    if not path.is_file():
        raise SystemExit(f"{path} not found: --official must be a checkout of hellomuffin/trajtok")
    spec = importlib.util.spec_from_file_location("official_seg_metric", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)[None, None, :]


def hand_made() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, predicted, ground truth), the cases of tests/test_video_quality.py and a few more."""
    return [
        ("perfect, no background", row(5, 5, 7, 7), row(1, 1, 2, 2)),
        ("perfect, background id 0", row(0, 0, 1, 1), row(0, 0, 1, 1)),
        ("split object", row(3, 3, 3, 3, 3, 4, 4, 4), row(1, 1, 1, 1, 1, 1, 1, 1)),
        ("missed object", row(3, 3, 3, 3, 3, 3, 3, 3, 4, 4), row(1, 1, 1, 1, 1, 1, 2, 2, 0, 0)),
        ("false positives", row(1, 1, 1, 1, 2, 2, 3, 3), row(1, 1, 1, 1, 0, 0, 0, 0)),
        ("good trajectory 0", row(0, 0, 0, 0, 1, 1, 1, 1), row(1, 1, 1, 1, 0, 0, 0, 0)),
        ("void", row(7, 7, 7, 7, 7, 7, 8, 8), row(1, 1, 1, 1, 255, 255, 0, 0)),
        ("IoU exactly 0.5", row(3, 3, 3, 3), row(1, 1, 2, 2)),
        ("two at 0.5 and one below", row(3, 3, 4, 4, 5, 5, 5, 5), row(1, 1, 1, 1, 2, 2, 2, 2)),
        ("no ground-truth object", row(3, 3, 4, 4), row(0, 0, 0, 0)),
        ("only predicted id 0", row(0, 0, 0, 0), row(1, 0, 0, 0)),
        ("nothing reaches 0.5", row(5, 5, 5, 5), row(1, 0, 0, 0)),
        ("one frame of many", torch.zeros(3, 2, 2, dtype=torch.long), torch.ones(3, 2, 2, dtype=torch.long)),
    ]


def random_case(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A ground truth of moving boxes with void pixels, and a prediction on a coarse grid (``h = H / s``) made from
    it, corrupted, renumbered among up to 128 ids (0 included) and nearest-upsampled."""
    t = int(rng.integers(1, 9))
    scale = int(rng.choice([1, 2, 4]))
    h, w = int(rng.integers(4, 17)), int(rng.integers(4, 17))
    height, width = h * scale + int(rng.integers(0, scale)), w * scale + int(rng.integers(0, scale))
    target = np.zeros((t, height, width), dtype=np.int64)
    for obj in range(1, int(rng.integers(1, 7))):
        y, x = int(rng.integers(0, height - 2)), int(rng.integers(0, width - 2))
        bh, bw = int(rng.integers(2, height - y + 1)), int(rng.integers(2, width - x + 1))
        dy, dx = rng.integers(-2, 3, 2)
        for f in range(t):
            yy, xx = max(0, y + f * dy), max(0, x + f * dx)
            target[f, yy:yy + bh, xx:xx + bw] = obj
    target[rng.random(target.shape) < rng.uniform(0, 0.1)] = 255
    # The coarse prediction: the ground truth sampled on the grid, renumbered, then corrupted.
    coarse = target[:, :: max(1, height // h)][:, :h, :: max(1, width // w)][:, :, :w]
    coarse = np.where(coarse == 255, 0, coarse)
    num_ids = int(rng.choice([8, 32, 128]))
    mapping = rng.permutation(num_ids)[:7]
    predicted = mapping[coarse]
    noise = rng.random(predicted.shape) < rng.uniform(0, 0.3)
    predicted[noise] = rng.integers(0, num_ids, int(noise.sum()))
    if rng.random() < 0.3:  # merge two trajectories
        predicted[predicted == mapping[1]] = mapping[2]
    if rng.random() < 0.3:  # split one in time
        predicted[t // 2:][predicted[t // 2:] == mapping[1]] = mapping[3]
    predicted = torch.from_numpy(predicted)
    up = F.interpolate(predicted[None].float(), size=(height, width), mode="nearest")[0].long()
    return up, torch.from_numpy(target)


def official_scores(official, predicted: torch.Tensor, target: torch.Tensor, drop_zero: bool) -> dict[str, float]:
    """The drivers' call: ground truth 255 made 0, ``ignore_id=0``; the standard form shifts predicted ids by one."""
    target = target.clone()
    target[target == 255] = 0
    predicted = predicted if drop_zero else predicted - predicted.min() + 1
    veq, veq_sq, veq_rq = official.veq_scores(predicted, target, ignore_id=0, iou_thr=0.5)
    stq = official.stq_en(predicted, target, ignore_id=0, iou_thr=0.5)
    return {"veq": veq, "stq": stq["stq_en"], "sq": veq_sq, "rq": veq_rq, "aq": stq["aq"]}


def our_scores(predicted: torch.Tensor, target: torch.Tensor, drop_zero: bool) -> dict[str, float]:
    q = video_quality(predicted, target, drop_predicted_zero=drop_zero)
    return {"veq": q.veq, "stq": q.stq, "sq": q.segmentation, "rq": q.recognition, "aq": q.association}


def has_exact_tie(predicted: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether some pair of tubes has an IoU of exactly 0.5, where the solver's tie-breaking decides a match."""
    o = tube_overlaps(predicted, target)
    union = o.target_sizes[:, None] + o.predicted_sizes[None, :] - o.intersection
    return bool((2 * o.intersection == union).any())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, type=Path, help="a checkout of github.com/hellomuffin/trajtok")
    parser.add_argument("--cases", type=int, default=200, help="random videos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    official = load_official(args.official)
    rng = np.random.default_rng(args.seed)
    cases = hand_made() + [(f"random {i}", *random_case(rng)) for i in range(args.cases)]
    ties = sum(has_exact_tie(p, t) for _, p, t in cases)
    print(f"{len(cases)} videos, {ties} of them with a pair of tubes at IoU exactly 0.5")
    worst_overall = 0.0
    for drop_zero in (False, True):
        form = "official form (drop_predicted_zero=True)" if drop_zero else "standard form (every trajectory counts)"
        worst = dict.fromkeys(("veq", "stq", "sq", "rq", "aq"), 0.0)
        where = dict.fromkeys(worst, "")
        nonzero = 0
        for name, predicted, target in cases:
            ours = our_scores(predicted, target, drop_zero)
            theirs = official_scores(official, predicted, target, drop_zero)
            nonzero += ours["veq"] > 0
            for key in worst:
                diff = abs(ours[key] - theirs[key])
                if diff > worst[key]:
                    worst[key], where[key] = diff, name
            if not name.startswith("random"):
                print(f"  {form[:8]} {name:28s} ours VEQ {ours['veq']:.6f} STQ {ours['stq']:.6f}   "
                      f"official VEQ {theirs['veq']:.6f} STQ {theirs['stq']:.6f}")
        print(f"{form}: {len(cases)} videos ({nonzero} with VEQ > 0); largest |ours - official|:")
        for key, diff in worst.items():
            print(f"    {key:4s} {diff:.3e}" + (f"  ({where[key]})" if diff else ""))
        worst_overall = max(worst_overall, *worst.values())
    if worst_overall > args.tolerance:
        raise SystemExit(f"a difference of {worst_overall:.3e} exceeds the tolerance {args.tolerance:g}")
    print(f"parity within {args.tolerance:g}")


if __name__ == "__main__":
    main()
