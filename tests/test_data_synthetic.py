"""The synthetic shapes set: determinism, ground truth that matches the decoded video, occlusion in the
trajectory graph, contrast groups, and the cache."""

from __future__ import annotations

import filecmp
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from datamodules.pseudo_label_files import load_pseudo_labels
from datamodules.synthetic import (
    BACKGROUNDS,
    COLOURS,
    ClipSpec,
    ObjectSpec,
    SyntheticConfig,
    captions,
    ensure_synthetic,
    generate,
    main,
    render_background,
    render_clip,
)
from datamodules.video import read_clip

CFG = SyntheticConfig(seed=5, train=24, val=6, test=6, frame_size=64, num_frames=16)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth"))
    generate(out, CFG)
    return out


def rows(root, split="train"):
    with open(os.path.join(root, f"{split}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def erode(mask, steps=2):
    """Binary erosion by a cross, ``steps`` times: drops edge pixels blurred by compression."""
    for _ in range(steps):
        m = mask.copy()
        m[1:] &= mask[:-1]
        m[:-1] &= mask[1:]
        m[:, 1:] &= mask[:, :-1]
        m[:, :-1] &= mask[:, 1:]
        mask = m
    return mask


def test_layout_and_annotation_rows(synth):
    assert sorted(os.listdir(synth)) == ["meta.json", "test.jsonl", "train.jsonl", "val.jsonl", "videos"]
    for split, n in (("train", 24), ("val", 6), ("test", 6)):
        split_rows = rows(synth, split)
        assert len(split_rows) == n
        for r in split_rows:
            assert r["video"] == f"videos/{r['video'][7:]}" and r["video"].endswith(".mp4")
            assert r["mask"] == r["video"][:-4] + "_mask.npz" and r["graph"] == r["video"][:-4] + "_graph.npz"
            assert isinstance(r["caption"], list) and len(r["caption"]) == 2
            assert 1 <= len(r["objects"]) <= 3
            assert all(os.path.isfile(os.path.join(synth, r[k])) for k in ("video", "mask", "graph"))


def test_deterministic_by_seed(synth, tmp_path):
    again = str(tmp_path / "again")
    generate(again, CFG)
    assert rows(again) == rows(synth)
    for name in sorted(os.listdir(os.path.join(synth, "videos"))):
        # Masks and graphs byte for byte; the single-threaded encoder makes even the mp4s identical.
        assert filecmp.cmp(os.path.join(synth, "videos", name), os.path.join(again, "videos", name), shallow=False)
    other = str(tmp_path / "other")
    generate(other, SyntheticConfig(seed=6, train=24, val=6, test=6, frame_size=64))
    assert [r["caption"] for r in rows(other)] != [r["caption"] for r in rows(synth)]


def test_masks_agree_with_decoded_video_colours_and_motion(synth):
    checked = 0
    for r in rows(synth)[:12]:
        video = read_clip(os.path.join(synth, r["video"]), CFG.num_frames).numpy().astype(np.int64)
        masks, graph, stuff = load_pseudo_labels(os.path.join(synth, r["mask"]), os.path.join(synth, r["graph"]))
        assert masks.shape == (16, 64, 64) and graph.shape == (len(r["objects"]) + 1, 16)
        assert stuff.tolist() == [False] * len(r["objects"]) + [True]  # the objects, then the background
        for j, obj in enumerate(r["objects"]):
            colour = np.array(COLOURS[obj["colour"]])
            centres = []
            for t in np.flatnonzero(graph[j]):
                region = masks[t] == graph[j, t]
                inner = erode(region)
                if inner.sum() >= 4:
                    assert np.abs(video[t][inner] - colour).mean() < 12, (r["video"], obj, t)
                    checked += 1
                ys, xs = np.nonzero(region)
                centres.append((xs.mean(), ys.mean()))
            move = np.array(centres[-1]) - np.array(centres[0])
            expected = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}[obj["motion"]]
            if obj["motion"] == "still":
                assert np.abs(move).max() < 6  # visible part may shift a little when occluded
            else:
                assert move @ np.array(expected) > 10, (r["video"], obj, move)
    assert checked > 100


def test_segment_ids_are_per_frame_by_area_and_labels_are_panoptic(synth):
    for r in rows(synth)[:8]:
        masks, graph, stuff = load_pseudo_labels(os.path.join(synth, r["mask"]), os.path.join(synth, r["graph"]))
        for t in range(masks.shape[0]):
            ids = graph[:, t][graph[:, t] > 0]
            assert sorted(ids.tolist()) == list(range(1, len(ids) + 1))  # ids 1..k, each used once
            assert set(np.unique(masks[t]).tolist()) == set(ids.tolist())  # every pixel labelled: no id 0
            areas = [(masks[t] == i).sum() for i in range(1, len(ids) + 1)]
            assert areas == sorted(areas, reverse=True)
            # The background is one trajectory, present in every frame and the largest segment here.
            assert graph[stuff, t].tolist() == [1]


def test_fully_occluded_object_is_absent_in_the_graph():
    # A small red circle passes behind a large still white square in the middle of the frame.
    s, t = 64, 16
    circle = ObjectSpec("circle", "red", "small", "right", x0=8.0, y0=32.0, speed=3.2, depth=0)
    square = ObjectSpec("square", "white", "large", "still", x0=32.0, y0=32.0, speed=0.0, depth=1)
    spec = ClipSpec("x", "g", (circle, square), "stripes", 1)
    frames, masks, graph = render_clip(spec, t, s)
    assert frames.shape == (t, s, s, 3) and masks.dtype == np.uint8 and graph.shape == (3, t)  # + background
    xs = 8.0 + 3.2 * np.arange(t)
    hidden = np.abs(xs - 32.0) + 0.07 * s <= 0.85 * 0.125 * s  # circle inside the square's extent
    assert hidden.any() and not hidden.all()
    assert (graph[0, hidden] == 0).all() and (graph[0, ~hidden] > 0).all()
    assert (graph[1] > 0).all()
    for k in np.flatnonzero(hidden):
        assert (masks[k] == graph[1, k]).sum() + (masks[k] == graph[2, k]).sum() == s * s  # square + background
        assert not (frames[k] == COLOURS["red"]).all(-1).any()
    # When the square is in front it is whole; the circle's pixels are red.
    k = int(np.flatnonzero(~hidden)[0])
    assert (frames[k][masks[k] == graph[0, k]] == COLOURS["red"]).all()


def test_generated_sets_contain_full_occlusions(tmp_path):
    out = str(tmp_path / "s")
    generate(out, SyntheticConfig(seed=0, train=60, val=2, test=2, frame_size=64))
    absent = 0
    for r in rows(out):
        _, graph, _ = load_pseudo_labels(os.path.join(out, r["mask"]), os.path.join(out, r["graph"]))
        absent += int((graph == 0).any())
    assert absent >= 2


def test_contrast_groups_differ_in_one_word(synth):
    for split in ("train", "val", "test"):
        groups: dict[str, list[dict]] = {}
        for r in rows(synth, split):
            groups.setdefault(r["group"], []).append(r)
        assert all(len(g) <= 4 for g in groups.values())
        assert sum(len(g) >= 2 for g in groups.values()) >= len(groups) - 1  # only the last may be single
        canon = [r["caption"][0] for r in rows(synth, split)]
        assert len(set(canon)) == len(canon)  # one right answer per caption
        for members in groups.values():
            for a in members:
                for b in members:
                    if a is b:
                        continue
                    wa, wb = a["caption"][0].split(), b["caption"][0].split()
                    assert len(wa) == len(wb) and sum(x != y for x, y in zip(wa, wb)) == 1
                    diff = [
                        (k, oa[k], ob[k])
                        for oa, ob in zip(a["objects"], b["objects"])
                        for k in oa
                        if oa[k] != ob[k]
                    ]
                    assert len(diff) == 1 and diff[0][0] in ("colour", "motion")


def test_caption_phrasings():
    a = ObjectSpec("circle", "red", "large", "left", 0, 0, 1, 0)
    b = ObjectSpec("square", "blue", "small", "down", 0, 0, 1, 1)
    c = ObjectSpec("triangle", "green", "small", "still", 0, 0, 0, 2)
    assert captions((a,)) == ["a large red circle moves left", "the large red circle slides to the left"]
    assert captions((a, b))[0] == "a large red circle moves left while a small blue square moves down"
    assert captions((a, b))[1] == "the small blue square sinks as the large red circle slides to the left"
    assert captions((a, b, c))[0] == (
        "a large red circle moves left, a small blue square moves down and a small green triangle stays still"
    )


def test_backgrounds_are_muted_and_vary():
    imgs = [render_background(kind, seed, 48) for kind in BACKGROUNDS for seed in (1, 2)]
    for img in imgs:
        assert img.shape == (48, 48, 3) and img.dtype == np.uint8
        assert img.min() >= 25 and img.max() <= 165  # away from the saturated object colours
    assert len({img.tobytes() for img in imgs}) == len(imgs)


def test_ensure_synthetic_is_atomic_and_cached(tmp_path, monkeypatch):
    cfg = SyntheticConfig(seed=1, train=4, val=2, test=2, frame_size=32, num_frames=8)
    # Three concurrent callers; result() re-raises any error of a worker here.
    with ThreadPoolExecutor(3) as pool:
        results = [f.result() for f in [pool.submit(ensure_synthetic, str(tmp_path), cfg) for _ in range(3)]]
    final = os.path.join(str(tmp_path), cfg.name())
    assert results == [final] * 3
    assert os.listdir(str(tmp_path)) == [cfg.name()]  # no temporary folders left behind
    assert len(rows(final)) == 4
    stamp = os.path.getmtime(os.path.join(final, "meta.json"))
    assert ensure_synthetic(str(tmp_path), cfg) == final
    assert os.path.getmtime(os.path.join(final, "meta.json")) == stamp  # reused, not regenerated
    monkeypatch.setenv("TRAJTOK_CACHE", str(tmp_path / "env"))
    assert ensure_synthetic(None, cfg) == os.path.join(str(tmp_path), "env", "synthetic", cfg.name())


def test_command_line_entry(tmp_path, capsys):
    main(["--out", str(tmp_path / "cli"), "--train", "2", "--val", "1", "--test", "1", "--frame-size", "32"])
    assert len(rows(str(tmp_path / "cli"))) == 2 and "wrote 4 clips" in capsys.readouterr().out
