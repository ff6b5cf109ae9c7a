"""The embedded default data set: moving, occluding shapes with compositional captions.

Each clip shows 1-3 objects (a shape, a colour, a size and a motion each) over a textured background.
Captions name every object and its motion ("a large red circle moves left while a small blue square moves
down"), so retrieval needs objects *and* motion. Clips come in contrast groups: clips of one group are
the same scene except for one object's colour or one object's direction, and their first captions
differ in exactly that one word; a model that ignores colour or motion cannot tell them apart.

Objects are painted back to front; a nearer object hides what it covers, so trajectories can vanish
for some frames. Ground truth is exact and written in the TrajViT pseudo-label format (see
``pseudo_label_files``): per-frame segment ids numbered by decreasing visible area (as the TrajViT
segmenter orders its masks), and the trajectory graph linking them; a hidden object is absent (0).
The labels are panoptic, as the paper's: the background is a trajectory too, flagged as ``stuff`` in
the graph file so that quality can be reported for objects and background apart.

Everything is deterministic given the seed: planning draws from one numpy Generator per split, and
every clip renders from its own stored background seed.

This module is the default scenario, ``shapes``. ``SyntheticConfig.scenario = "motion"`` makes the motion test
set instead (``datamodules.synthetic_motion``): scenes told apart only by motion and identity over time, built
from this module's shapes, painting, labels, backgrounds and writers.

    python -m datamodules.synthetic --out DIR [--seed 0] [--train 768 --val 96 --test 128] [--scenario motion]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, Protocol

import av
import numpy as np
from jsonargparse.typing import PositiveInt

from datamodules.pseudo_label_files import pseudo_label_paths, write_graph, write_masks
from trajtok.files import ensure_folder

# Bumped whenever generation changes, so caches of an older version are never read as current.
VERSION = 2  # 2: the background is a labelled trajectory (panoptic targets)

SHAPES = ("circle", "square", "triangle", "diamond")
# Saturated colours, far from the muted backgrounds, so they survive yuv420p chroma subsampling.
COLOURS = {
    "red": (225, 35, 35),
    "green": (40, 200, 60),
    "blue": (45, 85, 240),
    "yellow": (240, 220, 40),
    "purple": (170, 55, 215),
    "white": (245, 245, 245),
}
# Half-extent of a shape as a fraction of the frame side.
SIZES = {"small": 0.07, "large": 0.125}
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
MOTIONS = (*DIRECTIONS, "still")
VERBS = {
    "left": ("moves left", "slides to the left"),
    "right": ("moves right", "slides to the right"),
    "up": ("moves up", "rises"),
    "down": ("moves down", "sinks"),
    "still": ("stays still", "does not move"),
}
BACKGROUNDS = ("noise", "stripes", "gradient", "checker")
SPLITS = ("train", "val", "test")
#: The generators: ``shapes`` (this module, the default) and ``motion`` (``datamodules.synthetic_motion``).
SCENARIOS = ("shapes", "motion")
Scenario = Literal["shapes", "motion"]


@dataclass(frozen=True)
class ObjectSpec:
    """One object: what it is, where it starts (pixel centre), how far it moves per frame, its depth."""

    shape: str
    colour: str
    size: str
    motion: str
    x0: float
    y0: float
    speed: float
    depth: int  # painting order: higher is nearer


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render a clip."""

    key: str
    group: str
    objects: tuple[ObjectSpec, ...]
    background: str
    background_seed: int


@dataclass(frozen=True)
class MotionOptions:
    """The knobs of the ``motion`` scenario (``datamodules.synthetic_motion``), read by no other scenario.

    Group size and the phenomenon mix are the main difficulty knobs. A model that sees every object's colour,
    shape and size but nothing over time can only guess inside a contrast group: its expected R@1 is the number
    of groups over the number of clips, and its R@k falls below 100 only through groups of more than k clips.
    The fractions set how many groups hold each phenomenon, and so which temporal facts their clips differ in.

    Attributes:
        objects: (fewest, most) objects per clip, within 1-3 (the classification tasks name at most three).
        group_size: (smallest, largest) contrast group: clips that share every object's look and the background
            and differ only in temporal facts (the split's last group may be smaller).
        identical: fraction of groups whose clips hold two identical-looking objects (same colour, shape and
            size), told apart in captions by where they start ("the small red circle on the left").
        turn: fraction of moving objects whose path turns once, by a right angle, mid-clip ("moves right then up").
        still: fraction of objects that do not move in the scene (a panning camera still sweeps past them).
        occlusion: fraction of groups routed so that a small object passes behind or in front of a large one;
            with identical-looking objects too, such a clip holds three objects where ``objects`` allows.
        pan: fraction of groups whose first clip is filmed by a panning camera (the background and every
            object shift together); the group's camera contrasts switch the pan on, off or to another direction,
            so more clips than this pan (``benchmarks.motion_set`` counts them); 0: no clip pans.
        speed: (least, most) distance an object travels over the clip, as a fraction of the frame side.
        pan_distance: how far the camera travels over a panning clip, as a fraction of the frame side.
        hidden: the least fraction of the clip's frames (and at least 2 frames) that an object passing behind
            another stays fully hidden, so that the occlusion and the re-appearance after it can be seen.
    """

    objects: tuple[int, int] = (2, 3)
    group_size: tuple[int, int] = (6, 16)
    identical: float = 0.4
    turn: float = 0.5
    still: float = 0.15
    occlusion: float = 0.4
    pan: float = 0.3
    speed: tuple[float, float] = (0.3, 0.5)
    pan_distance: float = 0.2
    hidden: float = 0.1

    def __post_init__(self) -> None:
        def within(name: str, low: float, high: float) -> None:
            value = getattr(self, name)
            if len(value) != 2 or not low <= value[0] <= value[1] <= high:
                raise ValueError(f"synthetic.motion.{name} must be (least, most) within {low}-{high}, got {value}")

        within("objects", 1, 3)
        within("group_size", 1, 64)
        within("speed", 0.0, 0.6)  # more would not fit a path, and its turn, into the frame
        for name in ("identical", "turn", "still", "occlusion", "pan"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"synthetic.motion.{name} is a fraction within 0-1, got {getattr(self, name)}")
        if not 0.0 < self.pan_distance <= 0.5:
            raise ValueError(f"synthetic.motion.pan_distance must be within (0, 0.5], got {self.pan_distance}")
        if not 0.0 <= self.hidden <= 0.5:
            raise ValueError(f"synthetic.motion.hidden must be within 0-0.5, got {self.hidden}")


@dataclass(frozen=True)
class SyntheticConfig:
    """What the generated set holds; any change makes another set (``name``).

    Attributes:
        seed: the set's seed (another seed gives other scenes).
        train: clips in the train split.
        val: clips in the val split.
        test: clips in the test split.
        frame_size: frame side in pixels.
        num_frames: frames per synthetic video (e.g. 64 for a long-video set, generated separately).
        fps: frame rate of the written mp4 files.
        scenario: the generator: ``shapes``, the default set (contrast groups that differ in one colour or one
            direction), or ``motion``, the motion test set (groups that share every look and the background and
            differ only over time: turn order, which identical-looking object does what, who passes in front,
            the camera; see ``motion``).
        motion: the knobs of the ``motion`` scenario; left at their defaults by every other scenario.
    """

    seed: int = 0
    train: PositiveInt = 768
    val: PositiveInt = 96
    test: PositiveInt = 128
    frame_size: PositiveInt = 96
    num_frames: PositiveInt = 16
    fps: PositiveInt = 8
    scenario: Scenario = "shapes"
    motion: MotionOptions = field(default_factory=MotionOptions)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"synthetic.scenario must be one of {', '.join(SCENARIOS)}, got {self.scenario!r}")
        if self.scenario != "motion" and self.motion != MotionOptions():
            raise ValueError(f"synthetic.motion is read by scenario 'motion' only, and scenario is {self.scenario!r}")
        if self.scenario == "motion" and self.num_frames < 8:
            raise ValueError(f"synthetic.num_frames must be at least 8 for scenario 'motion' (a turn and an "
                             f"occlusion need frames before and after them), got {self.num_frames}")

    def name(self) -> str:
        """A folder name that changes whenever the content would; the default scenario's does not name it."""
        if self.scenario == "motion":
            return motion_module().set_name(self)
        return (
            f"shapes-v{VERSION}-seed{self.seed}-n{self.train}-{self.val}-{self.test}"
            f"-{self.frame_size}px-{self.num_frames}f"
        )


# ---------------------------------------------------------------------------------------------- geometry


class Drawn(Protocol):
    """What painting reads of an object, whatever the scenario that planned it: ``ObjectSpec`` here, the
    motion scenario's objects there."""

    shape: str
    size: str
    depth: int


def radius(obj: Drawn, frame_size: int) -> float:
    return SIZES[obj.size] * frame_size


def centres(obj: ObjectSpec, num_frames: int) -> np.ndarray:
    """``(T, 2)`` pixel centres (x, y): straight motion at constant speed."""
    dx, dy = DIRECTIONS.get(obj.motion, (0.0, 0.0))
    t = np.arange(num_frames, dtype=np.float64)
    return np.stack([obj.x0 + dx * obj.speed * t, obj.y0 + dy * obj.speed * t], axis=1)


def shape_masks(shape: str, xy: np.ndarray, r: float, frame_size: int) -> np.ndarray:
    """bool ``(T, S, S)``: the pixels (by their centres) inside the shape centred at each ``xy``."""
    grid = np.arange(frame_size, dtype=np.float64) + 0.5
    dx = grid[None, None, :] - xy[:, 0, None, None]
    dy = grid[None, :, None] - xy[:, 1, None, None]
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        h = 0.85 * r  # about the area of the circle, so shape is not told by size
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.2 * r
    if shape == "triangle":
        # Upright isosceles triangle in the box [-r, r]^2: the half-width grows linearly downwards.
        v = (dy + r) / (2 * r)
        return (v >= 0) & (v <= 1) & (np.abs(dx) <= 1.1 * r * v)
    raise ValueError(f"unknown shape {shape!r}")


def in_frame(obj: ObjectSpec, num_frames: int, frame_size: int) -> bool:
    """Whether the whole object stays inside the frame along its path (with a 1 px margin)."""
    xy = centres(obj, num_frames)
    r = 1.2 * radius(obj, frame_size) + 1  # 1.2: the diamond's extent
    return bool((xy >= r).all() and (xy <= frame_size - r).all())


def paint(masks: Sequence[np.ndarray], depths: Sequence[int]) -> np.ndarray:
    """Which object each pixel shows: int8 ``(T, S, S)``, object index + 1 (0 = background), from each object's
    whole bool ``(T, S, S)`` mask, painted back to front (higher depth is nearer), so a nearer object hides
    what it covers. Any scenario paints with this, so occlusion means the same in every set."""
    owner = np.zeros(masks[0].shape, dtype=np.int8)
    for j in sorted(range(len(masks)), key=lambda j: depths[j]):
        owner[masks[j]] = j + 1
    return owner


def owner_map(objects: tuple[ObjectSpec, ...], num_frames: int, frame_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Paint objects back to front (``paint``). Returns ``owner`` int8 ``(T, S, S)`` (object index + 1,
    0 = background) and each object's unoccluded area ``(M, T)``."""
    masks = [shape_masks(o.shape, centres(o, num_frames), radius(o, frame_size), frame_size) for o in objects]
    full = np.stack([m.sum(axis=(1, 2)) for m in masks]).astype(np.int64)
    return paint(masks, [o.depth for o in objects]), full


def segments_and_graph(owner: np.ndarray, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """Panoptic per-frame segment ids (1 = largest visible segment of that frame) and the ``(M + 1, T)`` graph:
    rows ``0..M-1`` the objects, row ``M`` the background.

    The background is a trajectory like the objects, as in the paper's panoptic pseudo-labels: left
    unlabelled, merging it into an object's slot would cost nothing in the loss and ruin that object's IoU.
    It is one trajectory, not one per texture region: each texture is one static surface (a checkerboard's
    cells would be up to 256 tiny regions, more than K).
    """
    num_frames = owner.shape[0]
    masks = np.zeros(owner.shape, dtype=np.uint8)
    graph = np.zeros((num_objects + 1, num_frames), dtype=np.int64)
    background = num_objects
    for t in range(num_frames):
        areas = np.bincount(owner[t].ravel().astype(np.int64), minlength=num_objects + 1)
        areas = np.roll(areas, -1)  # trajectory j is owner j + 1; the background (owner 0) goes last
        visible = [j for j in np.argsort(-areas, kind="stable") if areas[j] > 0]
        for seg_id, j in enumerate(visible, start=1):
            masks[t][owner[t] == (0 if j == background else j + 1)] = seg_id
            graph[j, t] = seg_id
    return masks, graph


def well_visible(objects: tuple[ObjectSpec, ...], num_frames: int, frame_size: int) -> bool:
    """Every object shows at least a quarter of itself in at least three quarters of the frames, so
    its caption describes something one can see."""
    return mostly_visible(*owner_map(objects, num_frames, frame_size))


def mostly_visible(owner: np.ndarray, full: np.ndarray, part: float = 0.25, frames: float = 0.75) -> bool:
    """Whether every object of ``owner`` (``paint``) shows at least ``part`` of its unoccluded area ``full``
    ``(M, T)`` in at least ``frames`` of the frames."""
    for j in range(len(full)):
        seen = (owner == j + 1).sum(axis=(1, 2)) / np.maximum(full[j], 1)
        if (seen >= part).mean() < frames:
            return False
    return True


# -------------------------------------------------------------------------------------------- rendering


def muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A dull grey-ish colour: backgrounds stay away from the saturated object colours."""
    grey = rng.uniform(55, 135)
    return np.clip(grey + rng.uniform(-22, 22, size=3), 0, 255)


def render_background(kind: str, seed: int, frame_size: int) -> np.ndarray:
    """uint8 ``(S, S, 3)`` static texture of the given kind, from its own seed."""
    rng = np.random.default_rng(seed)
    s = frame_size
    a, b = muted_colour(rng), muted_colour(rng)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64) + 0.5
    angle = rng.uniform(0, np.pi)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    if kind == "gradient":
        w = (along - along.min()) / max(np.ptp(along), 1e-6)
    elif kind == "stripes":
        period = rng.uniform(6, 18)
        w = 0.5 + 0.5 * np.sin(2 * np.pi * along / period)
    elif kind == "checker":
        cell = int(rng.integers(6, 17))
        w = (((xx // cell) + (yy // cell)) % 2).astype(np.float64)
    elif kind == "noise":
        # Smooth blobs (coarse noise, bilinearly upsampled) plus a little fine grain.
        k = int(rng.integers(4, 9))
        coarse = rng.uniform(0, 1, size=(k + 1, k + 1))
        u = np.linspace(0, k, s)
        i0 = np.minimum(u.astype(int), k - 1)
        f = u - i0
        rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
        w = rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
        w = np.clip(w + rng.normal(0, 0.06, size=(s, s)), 0, 1)
    else:
        raise ValueError(f"unknown background {kind!r}")
    img = a[None, None, :] * (1 - w[..., None]) + b[None, None, :] * w[..., None]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def render_clip(spec: ClipSpec, num_frames: int, frame_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames uint8 ``(T, S, S, 3)``, segment masks uint8 ``(T, S, S)`` and graph int64 ``(M + 1, T)`` (the
    objects, then the background; see ``segments_and_graph``)."""
    owner, _ = owner_map(spec.objects, num_frames, frame_size)
    frames = np.repeat(render_background(spec.background, spec.background_seed, frame_size)[None], num_frames, 0)
    colour_objects(frames, owner, [o.colour for o in spec.objects])
    masks, graph = segments_and_graph(owner, len(spec.objects))
    return frames, masks, graph


def colour_objects(frames: np.ndarray, owner: np.ndarray, colours: Sequence[str]) -> None:
    """Fill, in place, the pixels of ``frames`` ``(T, S, S, 3)`` that ``owner`` gives to object ``j`` with the
    flat colour named ``colours[j]``: objects are flat, so a mask is exactly the pixels of one colour."""
    for j, colour in enumerate(colours):
        frames[owner == j + 1] = COLOURS[colour]


# --------------------------------------------------------------------------------------------- captions


def describe(obj: ObjectSpec, article: str, phrasing: int) -> str:
    return f"{article} {obj.size} {obj.colour} {obj.shape} {VERBS[obj.motion][phrasing]}"


def join(parts: list[str], pair_word: str) -> str:
    """One clause, two joined by ``pair_word``, or a list ending in ``and``."""
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return f"{parts[0]} {pair_word} {parts[1]}"
    return ", ".join(parts[:-1]) + f" and {parts[-1]}"


def captions(objects: tuple[ObjectSpec, ...]) -> list[str]:
    """Two phrasings: the canonical one in object order ("a ... moves left while a ..."), and one in
    reverse order with other verbs, so text models cannot match on word order alone."""
    first = [describe(o, "a", 0) for o in objects]
    second = [describe(o, "the", 1) for o in reversed(objects)]
    return [join(first, "while"), join(second, "as")]


# ---------------------------------------------------------------------------------------------- planning


def sample_object(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    used_colours: set[str],
    depth: int,
    avoid_motion: str | None = None,
) -> ObjectSpec:
    """A random object at a random place along which it stays in the frame.

    Its colour differs from every colour already in the clip: two same-coloured objects would merge
    where they overlap (invisible ground truth) and would make the caption ambiguous.
    """
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    free = [c for c in COLOURS if c not in used_colours]
    colour = free[int(rng.integers(len(free)))]
    size = ("small", "large")[int(rng.integers(2))]
    motions = [m for m in MOTIONS if m != avoid_motion]
    motion = motions[int(rng.integers(len(motions)))]
    s, t = cfg.frame_size, cfg.num_frames
    speed = 0.0 if motion == "still" else float(rng.uniform(0.3, 0.5) * s / (t - 1))
    margin = 1.2 * SIZES[size] * s + 1
    dx, dy = DIRECTIONS.get(motion, (0.0, 0.0))
    travel = speed * (t - 1)
    # Start positions whose whole path stays inside [margin, s - margin].
    lo_x, hi_x = margin + max(0.0, -dx * travel), s - margin - max(0.0, dx * travel)
    lo_y, hi_y = margin + max(0.0, -dy * travel), s - margin - max(0.0, dy * travel)
    x0, y0 = float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))
    return ObjectSpec(shape, colour, size, motion, x0, y0, speed, depth)


def recentre(obj: ObjectSpec, motion: str, num_frames: int) -> ObjectSpec:
    """The same object on a path through the same mid-clip point, in another direction: contrast
    members keep their layout (and roughly their occlusions) and differ only in the motion."""
    mid = centres(obj, num_frames)[(num_frames - 1) // 2]
    dx, dy = DIRECTIONS.get(motion, (0.0, 0.0))
    k = (num_frames - 1) // 2
    return replace(obj, motion=motion, x0=float(mid[0] - dx * obj.speed * k), y0=float(mid[1] - dy * obj.speed * k))


def cross(rng: np.random.Generator, obj: ObjectSpec, target: ObjectSpec, num_frames: int) -> ObjectSpec:
    """Put ``obj`` on a path through where ``target`` is at a random middle frame, so they overlap."""
    tc = int(rng.integers(num_frames // 4, 3 * num_frames // 4 + 1))
    meet = centres(target, num_frames)[tc]
    dx, dy = DIRECTIONS.get(obj.motion, (0.0, 0.0))
    return replace(obj, x0=float(meet[0] - dx * obj.speed * tc), y0=float(meet[1] - dy * obj.speed * tc))


def sample_scene(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[ObjectSpec, ...] | None:
    """1-3 objects; half of the later objects are routed through an earlier one, in another motion
    (so they pass each other: occlusion) rather than placed at random.
    None when the draw is unusable (out of frame, an object mostly hidden); the caller redraws."""
    n = int(rng.integers(1, 4))
    depths = rng.permutation(n)
    objects: list[ObjectSpec] = []
    for j in range(n):
        colours = {o.colour for o in objects}
        if j > 0 and rng.random() < 0.5:
            target = objects[int(rng.integers(j))]
            obj = sample_object(rng, cfg, colours, int(depths[j]), avoid_motion=target.motion)
            obj = cross(rng, obj, target, cfg.num_frames)
        else:
            obj = sample_object(rng, cfg, colours, int(depths[j]))
        objects.append(obj)
    scene = tuple(objects)
    if not all(in_frame(o, cfg.num_frames, cfg.frame_size) for o in scene):
        return None
    if not well_visible(scene, cfg.num_frames, cfg.frame_size):
        return None
    return scene


def variants(
    rng: np.random.Generator, base: tuple[ObjectSpec, ...], cfg: SyntheticConfig
) -> list[tuple[ObjectSpec, ...]]:
    """Usable scenes that differ from ``base`` only in one chosen object's colour or direction (all in
    the same object and attribute, so every pair of the group differs in one caption word)."""
    j = int(rng.integers(len(base)))
    obj = base[j]
    taken = {o.colour for o in base}
    if obj.motion != "still" and rng.random() < 0.5:
        change = [recentre(obj, m, cfg.num_frames) for m in DIRECTIONS if m != obj.motion]
    else:
        change = [replace(obj, colour=c) for c in COLOURS if c not in taken]
    out = []
    for k in rng.permutation(len(change)):
        scene = (*base[:j], change[int(k)], *base[j + 1 :])
        if in_frame(scene[j], cfg.num_frames, cfg.frame_size) and well_visible(scene, cfg.num_frames, cfg.frame_size):
            out.append(scene)
    return out


def plan_split(split: str, count: int, cfg: SyntheticConfig) -> list[ClipSpec]:
    """Contrast groups of 2-4 clips (the last may be smaller) until ``count`` clips; no canonical
    caption repeats within the split, so retrieval has one right answer per caption."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, SPLITS.index(split)]))
    specs: list[ClipSpec] = []
    seen_captions: set[str] = set()
    group = 0
    while len(specs) < count:
        want = min(int(rng.integers(2, 5)), count - len(specs))
        for _attempt in range(1000):
            base = sample_scene(rng, cfg)
            if base is None:
                continue
            members = [base, *variants(rng, base, cfg)][:want]
            texts = [captions(m)[0] for m in members]
            if len(members) == want and not seen_captions.intersection(texts):
                break
        else:
            raise RuntimeError(f"could not plan contrast group {group} of split {split!r}; config {cfg}")
        background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        background_seed = int(rng.integers(2**31))
        for scene in members:
            key = f"{split}_{len(specs):05d}"
            specs.append(ClipSpec(key, f"{split}_g{group:04d}", scene, background, background_seed))
        seen_captions.update(texts)
        group += 1
    return specs


# ----------------------------------------------------------------------------------------------- writing


def video_codec() -> str:
    """H.264 when this PyAV build has libx264, else MPEG-4 part 2 (always built in)."""
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except av.codec.codec.UnknownCodecError:
        return "mpeg4"


def write_mp4(path: str, frames: np.ndarray, fps: int, codec: str | None = None) -> None:
    """Encode uint8 ``(T, H, W, 3)`` RGB (even H and W) to yuv420p mp4 at high quality, so colours and
    edges survive compression; single-threaded and without x264's macroblock tree, so the bytes are
    reproducible."""
    codec = codec or video_codec()
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {w}x{h}")
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            # mbtree off: with it, x264 here gave slightly different bytes for the same frames from
            # run to run (seen in a few clips per hundred), breaking reproducibility.
            stream.options = {"crf": "12", "preset": "veryfast", "x264-params": "mbtree=0"}
        else:
            stream.options = {"qscale": "2"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_split(out_dir: str, split: str, specs: list[ClipSpec], cfg: SyntheticConfig, codec: str) -> None:
    """Render and write every clip of a split, then its JSONL annotations (same format real data uses)."""
    rows = []
    for spec in specs:
        frames, masks, graph = render_clip(spec, cfg.num_frames, cfg.frame_size)
        files = write_clip(out_dir, spec.key, frames, masks, graph, cfg.fps, codec)
        objects = [{k: v for k, v in asdict(o).items() if k in ("shape", "colour", "size", "motion")} for o in spec.objects]
        rows.append(
            {"video": files["video"], "caption": captions(spec.objects), "mask": files["mask"],
             "graph": files["graph"], "group": spec.group, "objects": objects}
        )
    write_rows(out_dir, split, rows)


def write_clip(out_dir: str, key: str, frames: np.ndarray, masks: np.ndarray, graph: np.ndarray, fps: int,
               codec: str) -> dict[str, str]:
    """Write a clip's mp4 and its pseudo-label files (``graph``'s last row, the background, flagged as stuff)
    under ``out_dir/videos``; returns their paths relative to ``out_dir``: ``video``, ``mask``, ``graph``."""
    os.makedirs(os.path.join(out_dir, "videos"), exist_ok=True)
    video = f"videos/{key}.mp4"
    mask, graph_path = pseudo_label_paths(video)
    write_mp4(os.path.join(out_dir, video), frames, fps, codec)
    write_masks(os.path.join(out_dir, mask), masks)
    write_graph(os.path.join(out_dir, graph_path), graph, stuff=np.arange(len(graph)) == len(graph) - 1)
    return {"video": video, "mask": mask, "graph": graph_path}


def write_rows(out_dir: str, split: str, rows: list[dict]) -> None:
    """``out_dir/<split>.jsonl``: one annotation row per clip, in clip order."""
    with open(os.path.join(out_dir, f"{split}.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def generate(out_dir: str, cfg: SyntheticConfig = SyntheticConfig()) -> dict[str, str]:
    """Write the whole set into ``out_dir`` (created); returns each split's annotation path."""
    if cfg.frame_size % 2:
        raise ValueError(f"frame_size must be even (yuv420p), got {cfg.frame_size}")
    if cfg.num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {cfg.num_frames}")
    os.makedirs(out_dir, exist_ok=True)
    codec = video_codec()
    if cfg.scenario == "motion":
        motion = motion_module()
        plan, write, version = motion.plan_split, motion.write_split, motion.VERSION
    else:
        plan, write, version = plan_split, write_split, VERSION
    for split in SPLITS:
        write(out_dir, split, plan(split, getattr(cfg, split), cfg), cfg, codec)
    with open(os.path.join(out_dir, "meta.json"), "w", encoding="utf-8") as f:
        json.dump({"version": version, "codec": codec, **config_fields(cfg)}, f, indent=1)
    return {split: os.path.join(out_dir, f"{split}.jsonl") for split in SPLITS}


def config_fields(cfg: SyntheticConfig) -> dict:
    """What ``meta.json`` records of ``cfg``: every field, but for the default scenario not the scenario's own
    (so the default set's files stay as they were before scenarios existed)."""
    fields = asdict(cfg)
    if cfg.scenario == "shapes":
        del fields["scenario"], fields["motion"]
    return fields


def motion_module():
    """``datamodules.synthetic_motion``, imported when first used: it builds on this module, which therefore
    cannot import it at the top."""
    return importlib.import_module("datamodules.synthetic_motion")


def default_cache_dir() -> str:
    """``$TRAJTOK_CACHE/synthetic``, else ``~/.cache/trajtok/synthetic``."""
    base = os.environ.get("TRAJTOK_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "trajtok")
    return os.path.join(base, "synthetic")


def ensure_synthetic(cache_dir: str | None = None, cfg: SyntheticConfig = SyntheticConfig()) -> str:
    """The folder of the set for ``cfg``, generated on first use (rank-safe: see ``trajtok.files.ensure_folder``)."""
    root = cache_dir or default_cache_dir()
    return ensure_folder(os.path.join(root, cfg.name()), lambda tmp: generate(tmp, cfg))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write into")
    defaults = SyntheticConfig()
    numbers = ("seed", "train", "val", "test", "frame_size", "num_frames", "fps")
    for name in numbers:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--scenario", choices=SCENARIOS, default=defaults.scenario,
                        help="the generator (the motion scenario with its default knobs)")
    args = parser.parse_args(argv)
    cfg = SyntheticConfig(**{k: getattr(args, k) for k in (*numbers, "scenario")})
    start = time.perf_counter()
    paths = generate(args.out, cfg)
    print(f"wrote {cfg.train + cfg.val + cfg.test} clips in {time.perf_counter() - start:.1f} s: {paths}")


if __name__ == "__main__":
    main()
