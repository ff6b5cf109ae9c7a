"""The motion test set (``SyntheticConfig.scenario = "motion"``): contrast groups that share every look and differ
only over time, captions that say what the masks show (turns, occlusion and re-appearance, camera pans, identical-
looking objects kept apart), the datamodules serving it through their options, and the default set unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest
from helpers import CONFIGS

from datamodules import synthetic_motion as sm
from datamodules.classification import write_synthetic_labels
from datamodules.images import ImageTextDataModule
from datamodules.options import SyntheticOptions
from datamodules.pseudo_label_files import load_pseudo_labels
from datamodules.synthetic import (
    COLOURS,
    DIRECTIONS,
    SPLITS,
    MotionOptions,
    SyntheticConfig,
    captions,
    ensure_synthetic,
    generate,
    plan_split,
    render_background,
    render_clip,
    video_codec,
)
from datamodules.video_text import VideoTextDataModule

CFG = SyntheticConfig(scenario="motion", test=240, frame_size=64, num_frames=16)


@pytest.fixture(scope="module")
def clips():
    return sm.plan_split("test", CFG.test, CFG)


def groups_of(planned):
    out = defaultdict(list)
    for clip in planned:
        out[clip.group].append(clip)
    return list(out.values())


def canonical(clip):
    return sm.motion_captions(clip.objects, clip.pan, clip.facts)[0]


# ------------------------------------------------------------------------------------------ the default set


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def test_the_default_set_is_what_it_was_before_scenarios():
    """Planned specs and captions of every split of the default set, three rendered clips, and the files of a small
    generated set hash as the code before the motion scenario made them (hashes taken from that code)."""
    cfg = SyntheticConfig()
    assert cfg.name() == "shapes-v2-seed0-n768-96-128-96px-16f"
    planned = {}
    for split in SPLITS:
        planned[split] = plan_split(split, getattr(cfg, split), cfg)
        assert (digest(repr(planned[split]).encode()),
                digest(json.dumps([captions(spec.objects) for spec in planned[split]]).encode())) == {
            "train": ("a31ad93d4e30ddab", "f7e26f80d57ef8bf"),
            "val": ("6b294f94528f361a", "07a7ef59e5e2f54a"),
            "test": ("9b54061955abe838", "4a966b7e8d3e1607")}[split]
    for index, expected in ((0, "5584159b19e2bc07"), (5, "738c867c5d9e6c7a"), (77, "94a8ad7957eccd11")):
        frames, masks, graph = render_clip(planned["test"][index], cfg.num_frames, cfg.frame_size)
        assert digest(frames.tobytes() + masks.tobytes() + graph.tobytes()) == expected


def test_the_default_set_writes_the_same_files(tmp_path):
    out = str(tmp_path / "small")
    generate(out, SyntheticConfig(seed=3, train=6, val=2, test=2, frame_size=32, num_frames=8))
    expected = {"train": "7ba7599a25c6a404", "val": "1148838e8ec9b786", "test": "0477d520817975c5"}
    labels = hashlib.sha256()
    for split in SPLITS:
        with open(os.path.join(out, f"{split}.jsonl"), "rb") as f:
            assert digest(f.read()) == expected[split]
        with open(os.path.join(out, f"{split}.jsonl"), encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                arrays = load_pseudo_labels(os.path.join(out, row["mask"]), os.path.join(out, row["graph"]))
                labels.update(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays))
    assert labels.hexdigest()[:16] == "4f71823ab2350631"
    with open(os.path.join(out, "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    assert list(meta) == ["version", "codec", "seed", "train", "val", "test", "frame_size", "num_frames", "fps"]


def test_the_scenario_is_named_and_checked():
    assert CFG.name().startswith("motion-v1-seed0-n768-96-240-64px-16f-")
    assert replace(CFG, motion=MotionOptions(group_size=(2, 4))).name() != CFG.name()
    with pytest.raises(ValueError, match="synthetic.motion is read by scenario 'motion' only"):
        SyntheticConfig(motion=MotionOptions(pan=0.5))
    with pytest.raises(ValueError, match=r"synthetic.motion.group_size must be \(least, most\)"):
        MotionOptions(group_size=(5, 3))
    with pytest.raises(ValueError, match="synthetic.motion.objects"):
        MotionOptions(objects=(2, 4))
    with pytest.raises(ValueError, match="synthetic.motion.turn is a fraction"):
        MotionOptions(turn=1.5)
    with pytest.raises(ValueError, match="synthetic.num_frames must be at least 8"):
        SyntheticConfig(scenario="motion", num_frames=4)


# ------------------------------------------------------------------------------------- groups and captions


def test_captions_are_unique_and_groups_differ_only_over_time(clips):
    assert len(clips) == CFG.test
    assert len({canonical(c) for c in clips}) == len(clips)  # one right answer per caption
    groups = groups_of(clips)
    low, high = CFG.motion.group_size
    assert all(low <= len(g) <= high for g in groups[:-1]) and len(groups[-1]) <= high
    for members in groups:
        first = members[0]
        for clip in members:
            # Every object's colour, shape and size in the same order, the same background: one frame cannot tell.
            assert [o.look for o in clip.objects] == [o.look for o in first.objects]
            assert (clip.background, clip.background_seed) == (first.background, first.background_seed)
            assert bool(clip.contrast) == (clip is not first)
        assert len({canonical(c) for c in members}) == len(members)
        assert len({tuple(sorted(o.look for o in c.objects)) for c in members}) == 1


def test_captions_read_as_designed():
    red = sm.Mover("circle", "red", "small", 20.0, 40.0, ("right", "up"), 7, 2.0, 0, 7)
    twin = replace(red, x0=44.0, legs=("down",), turn=0, depth=1)
    square = sm.Mover("square", "blue", "large", 32.0, 20.0, (), 0, 2.0, 2, 7)
    facts = sm.Facts(("on the left", "on the right", ""), (0, 1, 2), (sm.Interaction(1, 2, True, 3),), (0, 3, 0))
    first, second = sm.motion_captions((red, twin, square), "left", facts)
    assert first == ("the small red circle on the left moves right then up, the small red circle on the right moves "
                     "down and a large blue square stays still; the small red circle on the right passes behind the "
                     "large blue square, as the camera pans left")
    assert second == ("with the camera panning left, the large blue square does not move, the small red circle on the "
                      "right sinks and the small red circle on the left heads right and then turns up; the large blue "
                      "square hides the small red circle on the right for a while")


def test_identical_looking_objects_come_in_the_advertised_fraction():
    cfg = replace(CFG, motion=MotionOptions(group_size=(2, 2)))
    planned = sm.plan_split("train", 240, cfg)
    groups = groups_of(planned)
    twins = [any(g[0].facts.places) for g in groups]
    assert abs(np.mean(twins) - cfg.motion.identical) < 0.15, np.mean(twins)
    for group in groups:  # a group's clips all have the pair or none has
        assert len({bool(any(c.facts.places)) for c in group}) == 1
    none = sm.plan_split("val", 40, replace(CFG, motion=MotionOptions(identical=0.0, group_size=(2, 3))))
    every = sm.plan_split("val", 40, replace(CFG, motion=MotionOptions(identical=1.0, group_size=(2, 3))))
    assert not any(any(c.facts.places) for c in none) and all(any(c.facts.places) for c in every)


def test_a_phenomenon_at_zero_is_in_no_clip():
    cfg = replace(CFG, motion=MotionOptions(pan=0.0, turn=0.0, identical=0.0, group_size=(3, 5)))
    planned = sm.plan_split("val", 40, cfg)
    assert all(c.pan is None and not any(c.facts.places) and all(len(o.legs) < 2 for o in c.objects) for c in planned)
    assert len({canonical(c) for c in planned}) == 40


# --------------------------------------------------------------------------------- what the renders show


def object_track(clip, j, cfg=CFG):
    """Object ``j``'s mask per frame (bool ``(T, S, S)``), from the rendered segment masks and graph."""
    _, masks, graph = sm.render_motion_clip(clip, cfg)
    return np.stack([(masks[t] == graph[j, t]) & (graph[j, t] > 0) for t in range(cfg.num_frames)])


def centroids(track):
    ys, xs = np.mgrid[0:track.shape[1], 0:track.shape[2]]
    area = track.sum(axis=(1, 2))
    return np.stack([(track * xs).sum(axis=(1, 2)) / area, (track * ys).sum(axis=(1, 2)) / area], axis=1)


def test_turns_render_as_turns(clips):
    checked = 0
    for clip in clips:
        if clip.pan is not None:
            continue
        whole = sm.object_masks(clip.objects, None, CFG)
        for j, obj in enumerate(clip.objects):
            track = object_track(clip, j)
            if len(obj.legs) != 2 or (track.sum(axis=(1, 2)) != whole[j].sum(axis=(1, 2))).any():
                continue  # a turning object seen whole in every frame
            steps = np.diff(centroids(track), axis=0)
            first, second = (np.array(DIRECTIONS[leg]) for leg in obj.legs)
            before, after = steps[: obj.turn], steps[obj.turn:]
            # Along the first leg up to the turn frame, along the second from it, and never sideways.
            assert (before @ first > 0.5 * obj.speed).all() and (after @ second > 0.5 * obj.speed).all()
            assert (np.abs(before @ second) < 0.5 * obj.speed).all() and (np.abs(after @ first) < 0.5 * obj.speed).all()
            checked += 1
    assert checked >= 10


def test_occlusion_hides_an_object_and_it_reappears_as_one_trajectory(clips):
    least = sm.min_hidden_frames(CFG)
    occluded = [(c, j) for c in clips for j, run in enumerate(c.facts.hidden_runs) if run >= least]
    assert len(occluded) >= 5
    for clip, j in occluded[:8]:
        graph = sm.render_motion_clip(clip, CFG)[2]
        absent = np.flatnonzero(graph[j] == 0)
        assert len(absent) >= least and absent[0] > 0 and absent[-1] < CFG.num_frames - 1
        assert graph[j, absent[-1] + 1] > 0 and graph[j, 0] > 0  # seen before, hidden, seen again: one row
        event = next(e for e in clip.facts.interactions if e.passer == j)
        assert event.behind and "passes behind" in canonical(clip)


def test_a_pass_behind_and_in_front_differ_in_depth_only():
    cfg = CFG
    passer = sm.Mover("circle", "red", "small", 10.0, 32.0, ("right",), 0, 3.0, 0, 7)
    occluder = sm.Mover("square", "blue", "large", 32.0, 32.0, (), 0, 3.0, 1, 7)
    passer = sm.through(passer, np.array([32.0, 32.0]), 7, cfg.num_frames)
    behind = sm.scene_facts((passer, occluder), None, cfg)
    front = sm.scene_facts((replace(passer, depth=2), occluder), None, cfg)
    assert behind.interactions[0].behind and not front.interactions[0].behind
    assert behind.hidden_runs[0] >= sm.min_hidden_frames(cfg) and front.hidden_runs == (0, 0)
    texts = [sm.motion_captions(objects, None, facts)[0]
             for objects, facts in (((passer, occluder), behind), ((replace(passer, depth=2), occluder), front))]
    assert texts[0].endswith("; the small red circle passes behind the large blue square")
    assert texts[1].endswith("; the small red circle passes in front of the large blue square")


def test_a_camera_pan_moves_the_background_and_the_objects_together():
    still = sm.Mover("circle", "red", "small", 32.0, 32.0, (), 0, 2.0, 0, 7)
    facts = sm.Facts(("",), (0,), (), (0,))
    base = sm.MotionClip("k", "g", (still,), None, "checker", 7, facts)
    panning = replace(base, pan="right")
    frames, _, _ = sm.render_motion_clip(base, CFG)
    moving = sm.render_motion_clip(panning, CFG)[0]
    assert (frames == frames[0]).all()  # a still camera: nothing changes
    shift = int(sm.camera_path("right", CFG)[-1, 0] - sm.camera_path("right", CFG)[0, 0])
    assert shift > 5
    # Panning right, the view's content slides left by the camera's travel, background and the still object alike.
    assert (moving[-1][:, : -shift - 1][:, :40] == moving[0][:, shift:-1][:, :40]).mean() > 0.9
    red = (moving == COLOURS["red"]).all(-1)
    assert abs((centroids(red)[0, 0] - centroids(red)[-1, 0]) - shift) < 1.0
    assert sm.motion_captions(panning.objects, "right", facts)[0] == "a small red circle stays still, as the camera pans right"
    # The texture is larger than the frame: the still camera's window is its middle.
    margin = sm.pan_margin(CFG)
    texture = render_background("checker", 7, CFG.frame_size + 2 * margin)
    window = texture[margin:margin + CFG.frame_size, margin:margin + CFG.frame_size]
    background = ~(frames[0] == COLOURS["red"]).all(-1)
    assert (frames[0][background] == window[background]).all()


def test_masks_partition_the_frame_and_identical_objects_stay_apart(clips):
    twins = [c for c in clips if any(c.facts.places)][:4]
    others = [c for c in clips if not any(c.facts.places)][:4]
    assert twins and others
    for clip in twins + others:
        frames, masks, graph = sm.render_motion_clip(clip, CFG)
        m = len(clip.objects)
        assert graph.shape == (m + 1, CFG.num_frames) and (graph[m] > 0).all()  # the background: one trajectory
        for t in range(CFG.num_frames):
            ids = graph[:, t][graph[:, t] > 0]
            assert sorted(ids.tolist()) == list(range(1, len(ids) + 1))
            assert set(np.unique(masks[t]).tolist()) == set(ids.tolist())  # every pixel labelled, once
            for j, obj in enumerate(clip.objects):
                if graph[j, t]:
                    assert (frames[t][masks[t] == graph[j, t]] == COLOURS[obj.colour]).all()
        pair = [j for j, place in enumerate(clip.facts.places) if place]
        if pair:
            a, b = (object_track(clip, j) for j in pair)
            grown = a.copy()  # a's pixels and their 4 neighbours: the two never touch
            grown[:, 1:] |= a[:, :-1]
            grown[:, :-1] |= a[:, 1:]
            grown[:, :, 1:] |= a[:, :, :-1]
            grown[:, :, :-1] |= a[:, :, 1:]
            assert not (grown & b).any() and (a.sum(axis=(1, 2)) > 0).all() and (b.sum(axis=(1, 2)) > 0).all()


# ------------------------------------------------------------------------------------------------ serving


def test_a_small_set_generates_fast(tmp_path):
    cfg = replace(CFG, test=16, frame_size=96)
    start = time.perf_counter()
    planned = sm.plan_split("test", 16, cfg)
    sm.write_split(str(tmp_path), "test", planned, cfg, video_codec())
    assert time.perf_counter() - start < 10
    rows = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 16 and {"camera", "interactions", "objects", "caption", "group"} <= set(rows[0])
    assert all(o["motion"] == "still" or o["motion"].split(" then ")[0] in DIRECTIONS for r in rows for o in r["objects"])


@pytest.fixture(scope="module")
def motion_options(tmp_path_factory):
    return SyntheticOptions(cache_dir=str(tmp_path_factory.mktemp("motion-cache")), scenario="motion", train=8, val=8,
                            test=16, frame_size=64)


def test_the_video_text_datamodule_serves_the_scenario(motion_options):
    dm = VideoTextDataModule(synthetic=motion_options)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["video"].shape[1:] == (8, 3, 64, 64) and "mask" in batch
    folder = ensure_synthetic(motion_options.cache_dir, motion_options.config())
    assert os.path.basename(folder).startswith("motion-v1-")
    with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
        assert json.load(f)["scenario"] == "motion"
    # The classification tasks read the same rows: how many objects move, how many there are.
    labels = write_synthetic_labels(folder, "count")
    with open(labels["test"], encoding="utf-8") as f:
        assert all(json.loads(line)["label"] in ("one object", "two objects", "three objects") for line in f)


def test_single_frames_do_not_apply_and_say_which_option(motion_options):
    with pytest.raises(ValueError, match="ImageTextDataModule serves synthetic.scenario shapes, not 'motion'"):
        ImageTextDataModule(synthetic=motion_options)


def test_the_cli_option_and_the_overlay_reach_the_datamodule(cli_in_tmp, motion_options):
    from trajtok.cli import TrajTokCLI

    cli = TrajTokCLI(args=["--config", str(CONFIGS / "clip.yaml"), "--config", str(CONFIGS / "synthetic/motion.yaml"),
                           f"--data.init_args.synthetic.cache_dir={motion_options.cache_dir}",
                           "--data.init_args.synthetic.train=8", "--data.init_args.synthetic.val=8",
                           "--data.init_args.synthetic.test=16", "--data.init_args.synthetic.frame_size=64",
                           "--data.init_args.synthetic.motion.group_size=[4, 8]"], run=False)
    assert cli.datamodule.synthetic_options == replace(motion_options, motion=MotionOptions(group_size=(4, 8)))
    cli.datamodule.setup("test")
    assert len(cli.datamodule.datasets["test"]) == 16


@pytest.mark.parametrize("name", ["synthetic/motion.yaml", "synthetic/motion64.yaml"])
def test_the_overlays_hold_data_options_only(name):
    import yaml

    config = yaml.safe_load((CONFIGS / name).read_text())
    assert list(config) == ["data"] and list(config["data"]) == ["init_args"]
    synthetic = config["data"]["init_args"]["synthetic"]
    assert synthetic["scenario"] == "motion" and synthetic["test"] == 1000
    assert synthetic["num_frames"] == (64 if "64" in name else 16)


def test_the_statistics_command_writes_its_table(tmp_path):
    import csv

    from benchmarks import motion_set

    motion_set.main(["--test", "24", "--frames", "16", "--out", str(tmp_path / "motion_set.json")])
    with open(tmp_path / "motion_set.csv", newline="", encoding="utf-8") as f:
        rows = {r["statistic"]: r for r in csv.DictReader(f)}
    assert rows["clips"]["value"] == "24" and rows["distinct canonical captions"]["value"] == "24"
    assert float(rows["seconds to render and write"]["value"]) >= 0
    meta = json.loads((tmp_path / "motion_set.json").read_text())
    example = meta["sets"]["16f"]["example"]
    assert len(example["captions"]) == len(set(example["captions"])) >= 3
