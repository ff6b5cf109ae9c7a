"""The motion test set (``SyntheticConfig.scenario = "motion"``): clips told apart only by motion and identity over
time.

In the default set every object of a clip has its own colour and moves straight, and the clips of a contrast
group differ in one word, a colour or a direction, so a clip is often found from its colours alone. Here the
clips of a contrast group share every object's colour, shape and size and the background, and differ only in
temporal facts, so inside a group nothing seen in one frame picks the right clip:

- identical-looking objects: two objects of the same colour, shape and size, named by where they start ("the small
  red circle on the left moves up while the small red circle on the right moves down"); a contrast swaps what
  each does;
- turns: a path turns once, by a right angle, mid-clip ("moves right then up"); a contrast swaps the order of the
  legs, which starts and ends at the same places ("moves up then right");
- occlusion and re-appearance: a small object passes through the outline of a large one, behind it (fully hidden
  for some frames, then visible again: still one trajectory) or in front of it ("the small red circle passes
  behind the large blue square"); a contrast swaps which one is nearer;
- camera motion: the view pans, so the background and every object shift together (the background is rendered
  larger than the frame and a moving window cropped from it): "..., as the camera pans left"; objects' motions
  are told in the scene, so a still object sweeps across a panning frame and still "stays still";
- any object's motion (still, a direction, a turn) is a contrast too.

Captions are made from what the rendered masks show, not from what was planned: an interaction is told only when
the small object is inside the large one's outline for at least ``hidden`` of the clip and outside it at both
ends, and a clip in which an object is fully hidden without such an interaction is not used. Painting, shapes,
labels, backgrounds and the mp4 writer are the default set's (``datamodules.synthetic``); ground truth is the
same panoptic format (one trajectory per object, identical-looking ones apart, the background last).
``split_statistics`` summarises a planned split (``python -m benchmarks.motion_set`` writes it);
``datamodules.qa_motion`` asks questions about it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, replace

import numpy as np

from datamodules.synthetic import (
    BACKGROUNDS,
    COLOURS,
    DIRECTIONS,
    SHAPES,
    SPLITS,
    VERBS,
    SyntheticConfig,
    colour_objects,
    join,
    mostly_visible,
    paint,
    radius,
    render_background,
    segments_and_graph,
    shape_masks,
    write_clip,
    write_rows,
)

# Bumped whenever generation changes, so caches of an older version are never read as current.
VERSION = 1
#: The right-angle turns of each direction.
TURNS = {"left": ("up", "down"), "right": ("up", "down"), "up": ("left", "right"), "down": ("left", "right")}
#: The temporal facts the clips of a contrast group differ in (see ``mutate``).
CONTRASTS = ("order", "identity", "depth", "camera", "motion")
#: Where each of two identical-looking objects starts, as captions name it: along x, then along y.
PLACES = (("on the left", "on the right"), ("at the top", "at the bottom"))
# The diamond reaches 1.2 radii from its centre, farther than the other shapes.
EXTENT = 1.2


@dataclass(frozen=True)
class Mover:
    """One object of a motion clip: what it looks like, and its path in the scene (pixels of the frame a still
    camera sees).

    ``legs`` are its directions in order: none (still), one (straight), or two (a right-angle turn at frame
    ``turn``); it covers ``speed`` pixels per frame. ``anchor`` is the frame whose position a change of motion
    keeps, so that a contrast moves the object through the same place (the middle frame, or where it meets the
    object it was routed across)."""

    shape: str
    colour: str
    size: str
    x0: float
    y0: float
    legs: tuple[str, ...]
    turn: int
    speed: float
    depth: int  # painting order: higher is nearer
    anchor: int

    @property
    def look(self) -> tuple[str, str, str]:
        """What one frame shows of it, as captions name it."""
        return self.size, self.colour, self.shape

    @property
    def motion(self) -> str:
        """Its motion as the annotation rows say it: ``still``, a direction, or ``right then up``."""
        return " then ".join(self.legs) or "still"


@dataclass(frozen=True)
class Interaction:
    """Object ``passer`` is inside object ``occluder``'s outline for ``frames`` frames in a row, and outside it
    at the clip's ends: it passes behind (hidden) or in front of it."""

    passer: int
    occluder: int
    behind: bool
    frames: int


@dataclass(frozen=True)
class Facts:
    """What a rendered motion clip shows over time, as its captions tell it: how each object is named (its
    place among identical-looking objects, or ``""``), the order objects are told in, the interactions, and
    each object's longest run of fully hidden frames that ends with it visible again (0 if none)."""

    places: tuple[str, ...]
    order: tuple[int, ...]
    interactions: tuple[Interaction, ...]
    hidden_runs: tuple[int, ...]


@dataclass(frozen=True)
class MotionClip:
    """Everything needed to render a motion clip, and what its rendering shows (``facts``, for the captions).
    ``contrast`` names the temporal facts it differs in from its group's first clip (empty for that one)."""

    key: str
    group: str
    objects: tuple[Mover, ...]
    pan: str | None  # the direction the camera pans, None for a still camera
    background: str
    background_seed: int
    facts: Facts
    contrast: tuple[str, ...] = ()


def set_name(cfg: SyntheticConfig) -> str:
    """The cache folder name of a motion set: its sizes, and a digest of the scenario's knobs, so that any
    change of them makes another folder."""
    knobs = hashlib.sha256(json.dumps(asdict(cfg.motion), sort_keys=True).encode()).hexdigest()[:8]
    return (f"motion-v{VERSION}-seed{cfg.seed}-n{cfg.train}-{cfg.val}-{cfg.test}-{cfg.frame_size}px"
            f"-{cfg.num_frames}f-{knobs}")


def min_hidden_frames(cfg: SyntheticConfig) -> int:
    """The fewest frames an interaction lasts, and an occluded object stays hidden, to be told (``hidden``)."""
    return max(2, int(np.ceil(cfg.motion.hidden * cfg.num_frames)))


# ---------------------------------------------------------------------------------------------- paths


def displacement(obj: Mover, num_frames: int) -> np.ndarray:
    """``(T, 2)`` offset (x, y) from where ``obj`` starts: each leg at constant speed, the second from ``turn``."""
    t = np.arange(num_frames, dtype=np.float64)
    out = np.zeros((num_frames, 2))
    if len(obj.legs) == 1:
        out += t[:, None] * np.array(DIRECTIONS[obj.legs[0]])
    elif len(obj.legs) == 2:
        out += np.minimum(t, obj.turn)[:, None] * np.array(DIRECTIONS[obj.legs[0]])
        out += np.maximum(t - obj.turn, 0)[:, None] * np.array(DIRECTIONS[obj.legs[1]])
    return obj.speed * out


def scene_path(obj: Mover, num_frames: int) -> np.ndarray:
    """``(T, 2)`` centres (x, y) of ``obj`` in the scene."""
    return np.array([obj.x0, obj.y0]) + displacement(obj, num_frames)


def camera_path(pan: str | None, cfg: SyntheticConfig) -> np.ndarray:
    """int ``(T, 2)``: where the camera's window is, relative to a still camera's, in whole pixels (so that the
    background and the objects shift by the same amount). A pan goes evenly from half its distance one way to
    half the other, so a panning clip and a still one see the same scene mid-clip."""
    if pan is None:
        return np.zeros((cfg.num_frames, 2), dtype=np.int64)
    distance = cfg.motion.pan_distance * cfg.frame_size
    along = np.arange(cfg.num_frames) / (cfg.num_frames - 1) - 0.5
    return np.round(along[:, None] * distance * np.array(DIRECTIONS[pan])).astype(np.int64)


def pan_margin(cfg: SyntheticConfig) -> int:
    """How much larger than the frame, on each side, the background is rendered, for the camera to pan over."""
    return int(np.ceil(cfg.motion.pan_distance * cfg.frame_size / 2)) + 1


def screen_paths(objects: tuple[Mover, ...], pan: str | None, cfg: SyntheticConfig) -> list[np.ndarray]:
    """Each object's ``(T, 2)`` centres in the frame: its scene path seen through the camera's window."""
    camera = camera_path(pan, cfg)
    return [scene_path(o, cfg.num_frames) - camera for o in objects]


def object_masks(objects: tuple[Mover, ...], pan: str | None, cfg: SyntheticConfig) -> list[np.ndarray]:
    """Each object's whole bool ``(T, S, S)`` mask in the frame, whatever covers it."""
    return [shape_masks(o.shape, xy, radius(o, cfg.frame_size), cfg.frame_size)
            for o, xy in zip(objects, screen_paths(objects, pan, cfg))]


# -------------------------------------------------------------------------------------------- rendering


def render_motion_clip(clip: MotionClip, cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames uint8 ``(T, S, S, 3)``, segment masks uint8 ``(T, S, S)`` and graph int64 ``(M + 1, T)`` (the objects,
    then the background), as ``synthetic.render_clip``; the background is cropped from a larger texture through
    the camera's window. Every clip of the scenario renders the same larger texture, so the clips of a group
    share their background whether the camera pans or not."""
    s, margin = cfg.frame_size, pan_margin(cfg)
    owner = paint(object_masks(clip.objects, clip.pan, cfg), [o.depth for o in clip.objects])
    texture = render_background(clip.background, clip.background_seed, s + 2 * margin)
    corner = margin + camera_path(clip.pan, cfg)  # the window's top-left pixel in the texture, per frame
    rows = corner[:, 1, None] + np.arange(s)
    cols = corner[:, 0, None] + np.arange(s)
    frames = texture[rows[:, :, None], cols[:, None, :]]  # (T, S, S, 3)
    colour_objects(frames, owner, [o.colour for o in clip.objects])
    masks, graph = segments_and_graph(owner, len(clip.objects))
    return frames, masks, graph


# ------------------------------------------------------------------------------------------------ facts


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """The ``(start, stop)`` frame ranges where the bool ``(T,)`` ``flags`` hold."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def places(objects: tuple[Mover, ...], pan: str | None, cfg: SyntheticConfig) -> tuple[str, ...] | None:
    """How captions tell identical-looking objects apart: by where they start in the frame, along the axis on which
    they are farther apart ("on the left" / "on the right", "at the top" / "at the bottom"); ``""`` for an object
    whose look is its own. None when two identical-looking objects are not clearly apart along that axis at the
    start (their outlines' spans along it overlap), or when a look is shared by more than two objects."""
    start = np.array([xy[0] for xy in screen_paths(objects, pan, cfg)])
    out = [""] * len(objects)
    for look, count in Counter(o.look for o in objects).items():
        if count == 1:
            continue
        if count > 2:
            return None
        a, b = (j for j, o in enumerate(objects) if o.look == look)
        gap = np.abs(start[a] - start[b])
        axis = int(gap[1] > gap[0])
        if gap[axis] < 2 * EXTENT * radius(objects[a], cfg.frame_size) + 2:
            return None
        first, second = (a, b) if start[a, axis] < start[b, axis] else (b, a)
        out[first], out[second] = PLACES[axis]
    return tuple(out)


def telling_order(objects: tuple[Mover, ...], names: tuple[str, ...]) -> tuple[int, ...]:
    """The order captions tell objects in: as planned, but identical-looking ones together, left before right
    and top before bottom, so that a swap of what they do changes the words' order and nothing else."""
    rank = {place: k for k, place in enumerate(p for pair in PLACES for p in pair)}
    order: list[int] = []
    for j, o in enumerate(objects):
        if j in order:
            continue
        same = [k for k, other in enumerate(objects) if other.look == o.look]
        order += sorted(same, key=lambda k: rank.get(names[k], 0))
    return tuple(order)


def inside_runs(masks: list[np.ndarray], a: int, b: int) -> np.ndarray:
    """bool ``(T,)``: frames where object ``a``'s whole outline lies within object ``b``'s."""
    return masks[a].any(axis=(1, 2)) & ~(masks[a] & ~masks[b]).any(axis=(1, 2))


def scene_facts(objects: tuple[Mover, ...], pan: str | None, cfg: SyntheticConfig) -> Facts | None:
    """What the clip shows over time (``Facts``), or None when it cannot be captioned truthfully: an object leaves
    the frame, two identical-looking objects touch (their trajectories could not be told apart) or are not
    clearly apart at the start, an object shows less than a quarter of itself in over a third of the frames or
    at either end, or an object is fully hidden without passing behind another for long enough to be told."""
    s, t = cfg.frame_size, cfg.num_frames
    paths = screen_paths(objects, pan, cfg)
    for o, xy in zip(objects, paths):
        reach = EXTENT * radius(o, s) + 1
        if not ((xy >= reach).all() and (xy <= s - reach).all()):
            return None
    for a in range(len(objects)):
        for b in range(a + 1, len(objects)):
            if objects[a].look == objects[b].look:
                apart = np.linalg.norm(paths[a] - paths[b], axis=1).min()
                if apart <= 2 * EXTENT * radius(objects[a], s) + 2:
                    return None
    names = places(objects, pan, cfg)
    if names is None:
        return None
    masks = object_masks(objects, pan, cfg)
    owner = paint(masks, [o.depth for o in objects])
    full = np.stack([m.sum(axis=(1, 2)) for m in masks])
    shown = np.stack([(owner == j + 1).sum(axis=(1, 2)) for j in range(len(objects))])
    if not mostly_visible(owner, full, 0.25, 2 / 3) or ((shown / full)[:, [0, -1]] < 0.25).any():
        return None
    least = min_hidden_frames(cfg)
    interactions, explained = [], np.zeros((len(objects), t), dtype=bool)
    for a in range(len(objects)):
        for b in range(len(objects)):
            if a == b or objects[a].look == objects[b].look:
                continue
            inside = inside_runs(masks, a, b)
            spans = [(i, j) for i, j in runs(inside) if j - i >= least and i > 0 and j < t]
            if spans and not inside[0] and not inside[-1]:
                behind = objects[a].depth < objects[b].depth
                interactions.append(Interaction(a, b, behind, max(j - i for i, j in spans)))
                if behind:
                    explained[a] |= inside
    hidden = shown == 0
    if (hidden & ~explained).any():
        return None
    hidden_runs = tuple(max((j - i for i, j in runs(h) if j < t), default=0) for h in hidden)
    return Facts(names, telling_order(objects, names), tuple(interactions), hidden_runs)


# --------------------------------------------------------------------------------------------- captions


def name(obj: Mover, place: str, article: str) -> str:
    """``a small red circle``, or for one of two identical-looking objects ``the small red circle on the left``."""
    if place:
        return f"the {obj.size} {obj.colour} {obj.shape} {place}"
    return f"{article} {obj.size} {obj.colour} {obj.shape}"


def motion_words(obj: Mover, phrasing: int) -> str:
    """``moves right then up`` (or ``heads right and then turns up``), a direction, or staying still."""
    if len(obj.legs) == 2:
        first, second = obj.legs
        return f"moves {first} then {second}" if phrasing == 0 else f"heads {first} and then turns {second}"
    return VERBS[obj.legs[0] if obj.legs else "still"][phrasing]


def interaction_words(event: Interaction, objects: tuple[Mover, ...], names: tuple[str, ...], phrasing: int) -> str:
    """``the small red circle passes behind the large blue square``, or ``... in front of ...``."""
    passer = name(objects[event.passer], names[event.passer], "the")
    occluder = name(objects[event.occluder], names[event.occluder], "the")
    if phrasing == 0:
        return f"{passer} passes {'behind' if event.behind else 'in front of'} {occluder}"
    return f"{occluder} hides {passer} for a while" if event.behind else f"{passer} crosses in front of {occluder}"


def motion_captions(objects: tuple[Mover, ...], pan: str | None, facts: Facts) -> list[str]:
    """Two phrasings, as the default set's: the canonical one (objects in telling order, then each interaction
    after ``;``, then the camera), and one in reverse order with other words, so that text models cannot match
    on word order alone. Every temporal fact is in both."""
    names = facts.places
    first = [f"{name(objects[j], names[j], 'a')} {motion_words(objects[j], 0)}" for j in facts.order]
    second = [f"{name(objects[j], names[j], 'the')} {motion_words(objects[j], 1)}" for j in reversed(facts.order)]
    canonical = join(first, "while") + "".join(
        f"; {interaction_words(e, objects, names, 0)}" for e in facts.interactions)
    other = join(second, "as") + "".join(f"; {interaction_words(e, objects, names, 1)}" for e in facts.interactions)
    if pan is not None:
        canonical += f", as the camera pans {pan}"
        other = f"with the camera panning {pan}, {other}"
    return [canonical, other]


# ---------------------------------------------------------------------------------------------- planning


def pick(rng: np.random.Generator, options: tuple | list):
    """One of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]


def sample_motion(rng: np.random.Generator, cfg: SyntheticConfig, still: bool | None = None) -> tuple[tuple[str, ...], int]:
    """Legs and turn frame: still with probability ``still`` (unless ``still`` is given), else a turn with
    probability ``turn``, at a frame in the clip's middle two fifths, else a straight line."""
    knobs, t = cfg.motion, cfg.num_frames
    if still if still is not None else rng.random() < knobs.still:
        return (), 0
    first = pick(rng, tuple(DIRECTIONS))
    if rng.random() < knobs.turn:
        turn = int(rng.integers(round(0.3 * (t - 1)), round(0.7 * (t - 1)) + 1))
        return (first, pick(rng, TURNS[first])), turn
    return (first,), 0


def place_in_view(rng: np.random.Generator, obj: Mover, pan: str | None, cfg: SyntheticConfig) -> Mover | None:
    """``obj`` started at a random place from which its whole path stays in the frame through the camera; None
    when no such place exists."""
    s = cfg.frame_size
    reach = EXTENT * radius(obj, s) + 1
    relative = displacement(obj, cfg.num_frames) - camera_path(pan, cfg)
    low, high = reach - relative.min(axis=0), s - reach - relative.max(axis=0)
    if (low > high).any():
        return None
    return replace(obj, x0=float(rng.uniform(low[0], high[0])), y0=float(rng.uniform(low[1], high[1])))


def through(obj: Mover, point: np.ndarray, frame: int, num_frames: int) -> Mover:
    """``obj`` started so that it is at ``point`` at ``frame`` (which becomes its anchor)."""
    x0, y0 = point - displacement(obj, num_frames)[frame]
    return replace(obj, x0=float(x0), y0=float(y0), anchor=frame)


def group_phenomena(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[int, bool, bool, str | None]:
    """What a contrast group shows, drawn by the knobs: its number of objects, whether two of them look
    identical, whether one is routed through another, and the first clip's pan (None: a still camera). Two
    identical-looking objects and a pass need three objects: the clip gets them where ``objects`` allows, else
    the pass is dropped."""
    knobs = cfg.motion
    n = int(rng.integers(knobs.objects[0], knobs.objects[1] + 1))
    identical = rng.random() < knobs.identical
    occlusion = rng.random() < knobs.occlusion
    pan = pick(rng, tuple(DIRECTIONS)) if rng.random() < knobs.pan else None
    if identical and occlusion:
        n = max(n, min(3, knobs.objects[1]))
        occlusion = n >= 3
    return n, identical and n >= 2, occlusion and n >= 2, pan


def sample_group_scene(
    rng: np.random.Generator, cfg: SyntheticConfig, n: int, identical: bool, occlusion: bool, pan: str | None
) -> tuple[Mover, ...] | None:
    """The first clip of a contrast group: ``n`` objects, two of them identical-looking if asked, and a small one
    routed through a large one's centre at a middle frame (behind or in front of it, at random) if asked. None
    when the draw is unusable (out of frame, ...); the caller redraws.

    Colours differ between looks, as in the default set: same-coloured objects of different looks would merge
    where they overlap and blur what the caption names."""
    knobs, s, t = cfg.motion, cfg.frame_size, cfg.num_frames
    colours = [str(c) for c in rng.permutation(list(COLOURS))]
    looks = []
    for j in range(n):
        size = pick(rng, ("small", "large"))
        looks.append((size, colours[j], pick(rng, SHAPES)))
    if identical:
        looks[1] = looks[0] = ("small" if occlusion else looks[0][0], *looks[0][1:])
    occluder = passer = None
    if occlusion:
        occluder, passer = n - 1, 0  # the passer may be one of the identical pair: it is small then
        looks[passer] = ("small", *looks[passer][1:])
        looks[occluder] = ("large", *looks[occluder][1:])
    depths = [int(d) for d in rng.permutation(n)]
    speeds = rng.uniform(*knobs.speed, size=n) * s / (t - 1)
    objects: list[Mover] = []
    for j, (size, colour, shape) in enumerate(looks):
        legs, turn = sample_motion(rng, cfg, still=False if j == passer else None)
        obj = Mover(shape, colour, size, 0.0, 0.0, legs, turn, float(speeds[j]), depths[j], (t - 1) // 2)
        placed = place_in_view(rng, obj, pan, cfg) if j != passer else obj
        if placed is None:
            return None
        objects.append(placed)
    if occlusion:
        meet = int(rng.integers(t // 4, 3 * t // 4 + 1))
        centre = scene_path(objects[occluder], t)[meet]
        objects[passer] = through(objects[passer], centre, meet, t)
        behind = rng.random() < 0.5
        low, high = sorted((objects[passer].depth, objects[occluder].depth))
        objects[passer] = replace(objects[passer], depth=low if behind else high)
        objects[occluder] = replace(objects[occluder], depth=high if behind else low)
    return tuple(objects)


def twins(facts: Facts) -> list[int]:
    """The two identical-looking objects of a clip (empty if none)."""
    return [j for j, place in enumerate(facts.places) if place]


def keep_in_view(objects: tuple[Mover, ...], pan: str | None, cfg: SyntheticConfig) -> tuple[Mover, ...]:
    """``objects`` moved together by the smallest shift that keeps all their paths in the frame (unmoved when
    they fit, or when no common shift fits them), so their layout, and where each is against the others, stays."""
    s = cfg.frame_size
    low, high = np.full(2, -np.inf), np.full(2, np.inf)
    for obj, xy in zip(objects, screen_paths(objects, pan, cfg)):
        reach = EXTENT * radius(obj, s) + 1
        low, high = np.maximum(low, reach - xy.min(axis=0)), np.minimum(high, s - reach - xy.max(axis=0))
    if (low > high).any():
        return objects
    dx, dy = np.clip(0.0, low, high)
    return tuple(replace(o, x0=o.x0 + float(dx), y0=o.y0 + float(dy)) for o in objects)


def contrasts_for(objects: tuple[Mover, ...], facts: Facts, cfg: SyntheticConfig) -> list[str]:
    """The temporal facts a contrast can change in this clip (``CONTRASTS``): the order of a turn's legs, what two
    identical-looking objects do, who is nearer in an interaction, the camera (unless ``pan`` is 0: then no
    clip pans), an object's motion."""
    kinds = []
    if any(len(o.legs) == 2 for o in objects):
        kinds.append("order")
    if any(facts.places) and len({(objects[j].legs, objects[j].turn) for j in twins(facts)}) == 2:
        kinds.append("identity")
    if facts.interactions:
        kinds.append("depth")
    if cfg.motion.pan > 0:
        kinds.append("camera")
    return [*kinds, "motion"]


def mutate(
    rng: np.random.Generator, objects: tuple[Mover, ...], pan: str | None, facts: Facts, kind: str,
    cfg: SyntheticConfig,
) -> tuple[tuple[Mover, ...], str | None]:
    """The scene with one temporal fact changed, every look and place of the scene kept:

    - ``order``: a turning object takes its legs in the other order (same start and end, turning at ``T - 1 - turn``);
    - ``identity``: two identical-looking objects swap what they do, each keeping where it starts;
    - ``depth``: the two objects of an interaction swap which one is nearer;
    - ``camera``: the camera starts panning, stops, or pans another way;
    - ``motion``: an object gets another motion (still, a direction, a turn), through the same place at its anchor.
    """
    out = list(objects)
    t = cfg.num_frames
    if kind == "order":
        j = pick(rng, [k for k, o in enumerate(objects) if len(o.legs) == 2])
        out[j] = replace(objects[j], legs=objects[j].legs[::-1], turn=t - 1 - objects[j].turn)
    elif kind == "identity":
        a, b = twins(facts)
        out[a] = replace(objects[a], legs=objects[b].legs, turn=objects[b].turn, speed=objects[b].speed)
        out[b] = replace(objects[b], legs=objects[a].legs, turn=objects[a].turn, speed=objects[a].speed)
        out[a], out[b] = keep_in_view((out[a], out[b]), pan, cfg)
    elif kind == "depth":
        event = pick(rng, facts.interactions)
        a, b = event.passer, event.occluder
        out[a], out[b] = replace(objects[a], depth=objects[b].depth), replace(objects[b], depth=objects[a].depth)
    elif kind == "camera":
        options = [None, *DIRECTIONS] if pan is not None else list(DIRECTIONS)
        pan = pick(rng, [p for p in options if p != pan])
    elif kind == "motion":
        j = int(rng.integers(len(objects)))
        obj = objects[j]
        for _ in range(20):
            legs, turn = sample_motion(rng, cfg)
            if (legs, turn) != (obj.legs, obj.turn):
                break
        point = scene_path(obj, t)[obj.anchor]
        out[j] = through(replace(obj, legs=legs, turn=turn), point, obj.anchor, t)
    else:
        raise ValueError(f"unknown contrast {kind!r}; known: {', '.join(CONTRASTS)}")
    return tuple(out), pan


def plan_group(
    rng: np.random.Generator, cfg: SyntheticConfig, want: int, taken: set[str],
    phenomena: tuple[int, bool, bool, str | None],
) -> list[tuple[tuple[Mover, ...], str | None, Facts, tuple[str, ...]]] | None:
    """``want`` clips of one contrast group, ``(objects, pan, facts, contrast)`` each, whose canonical captions
    are all new (not in ``taken``); None when these draws cannot give them. The first clip has the ``phenomena``
    (``group_phenomena``); each other is it with one or two temporal facts changed (``mutate``)."""
    n, identical, occlusion, pan = phenomena
    for _attempt in range(50):
        scene = sample_group_scene(rng, cfg, n, identical, occlusion, pan)
        facts = None if scene is None else scene_facts(scene, pan, cfg)
        if facts is None:
            continue
        if identical and not any(facts.places):
            continue
        if occlusion and not facts.interactions:
            continue
        members = [(scene, pan, facts, ())]
        seen = {motion_captions(scene, pan, facts)[0]}
        if seen & taken:
            continue
        for _try in range(30 * want):
            if len(members) == want:
                break
            objects, member_pan, current, changed = scene, pan, facts, []
            for _step in range(1 if rng.random() < 0.6 else 2):
                kind = pick(rng, contrasts_for(objects, current, cfg))
                objects, member_pan = mutate(rng, objects, member_pan, current, kind, cfg)
                changed.append(kind)
                # Between two changes the scene may be unusable; the looks and so the identical pair are unchanged.
                current = scene_facts(objects, member_pan, cfg) or current
            member_facts = scene_facts(objects, member_pan, cfg)
            if member_facts is None:
                continue
            text = motion_captions(objects, member_pan, member_facts)[0]
            if text in seen or text in taken:
                continue
            seen.add(text)
            members.append((objects, member_pan, member_facts, tuple(changed)))
        if len(members) == want:
            return members
    return None


def plan_split(split: str, count: int, cfg: SyntheticConfig) -> list[MotionClip]:
    """Contrast groups of ``group_size`` clips (the last may be smaller) until ``count`` clips; no canonical
    caption repeats within the split, so retrieval has one right answer per caption."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, SPLITS.index(split), 1]))
    clips: list[MotionClip] = []
    taken: set[str] = set()
    group = 0
    low, high = cfg.motion.group_size
    while len(clips) < count:
        want = min(int(rng.integers(low, high + 1)), count - len(clips))
        # Drawn once per group: redrawn on a failure, the harder phenomena would be rarer than the knobs say.
        phenomena = group_phenomena(rng, cfg)
        for _attempt in range(20):
            members = plan_group(rng, cfg, want, taken, phenomena)
            if members is not None:
                break
        else:
            raise RuntimeError(f"could not plan contrast group {group} of split {split!r} with {want} clips: lower "
                               f"synthetic.motion.group_size (now {cfg.motion.group_size}) or raise objects; {cfg}")
        background = pick(rng, BACKGROUNDS)
        background_seed = int(rng.integers(2**31))
        for objects, pan, facts, contrast in members:
            key = f"{split}_{len(clips):05d}"
            clips.append(MotionClip(key, f"{split}_g{group:04d}", objects, pan, background, background_seed, facts,
                                    contrast))
            taken.add(motion_captions(objects, pan, facts)[0])
        group += 1
    return clips


# ----------------------------------------------------------------------------------------------- writing


def annotation_row(clip: MotionClip, files: dict[str, str]) -> dict:
    """A clip's JSONL row: the default set's keys (``objects`` with each motion as ``still``, ``right`` or
    ``right then up``), plus ``camera`` (the pan's direction or ``still``) and ``interactions``
    (``[passer, "behind" | "in front of", occluder]`` by object index)."""
    objects = [{"shape": o.shape, "colour": o.colour, "size": o.size, "motion": o.motion} for o in clip.objects]
    events = [[e.passer, "behind" if e.behind else "in front of", e.occluder] for e in clip.facts.interactions]
    return {"video": files["video"], "caption": motion_captions(clip.objects, clip.pan, clip.facts),
            "mask": files["mask"], "graph": files["graph"], "group": clip.group, "objects": objects,
            "camera": clip.pan or "still", "interactions": events}


def write_split(out_dir: str, split: str, clips: list[MotionClip], cfg: SyntheticConfig, codec: str) -> None:
    """Render and write every clip of a split, then its JSONL annotations (``annotation_row``)."""
    rows = []
    for clip in clips:
        frames, masks, graph = render_motion_clip(clip, cfg)
        rows.append(annotation_row(clip, write_clip(out_dir, clip.key, frames, masks, graph, cfg.fps, codec)))
    write_rows(out_dir, split, rows)


# -------------------------------------------------------------------------------------------- statistics


def expected_recall(keys: list, ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """Expected text-to-video R@k (percent) of a model that knows of each clip only ``keys[i]`` and ranks the
    clips with the caption's key first, in random order among them: ``min(k, n) / n`` for a clip whose key
    ``n`` clips share."""
    counts = Counter(keys)
    return {k: 100.0 * float(np.mean([min(k, counts[key]) / counts[key] for key in keys])) for k in ks}


def looks_key(clip: MotionClip) -> tuple:
    """What one frame of a clip shows of its objects (each one's size, colour and shape, in any order): all a
    model blind to time can match a caption by."""
    return tuple(sorted(o.look for o in clip.objects))


def split_statistics(clips: list[MotionClip], cfg: SyntheticConfig) -> list[dict]:
    """A planned split in numbers: rows of ``statistic``, ``value`` and ``percent`` (of the clips, where a count of
    clips), for ``benchmarks.motion_set``. The oracle rows are the expected text-to-video recall of a model that
    reads from the video only the objects' looks (or only their colours, or the caption's words in any order)."""
    n = len(clips)
    least = min_hidden_frames(cfg)
    rows: list[dict] = []

    def add(statistic: str, value: float, of_clips: bool = True) -> None:
        rows.append({"statistic": statistic, "value": value, "percent": round(100 * value / n, 1) if of_clips else ""})

    groups = Counter(c.group for c in clips)
    sizes = list(groups.values())
    captions = [motion_captions(c.objects, c.pan, c.facts) for c in clips]
    add("clips", n)
    add("distinct canonical captions", len({c[0] for c in captions}))
    add("contrast groups", len(groups), of_clips=False)
    add("group size: smallest", min(sizes), of_clips=False)
    add("group size: mean", round(float(np.mean(sizes)), 2), of_clips=False)
    add("group size: largest", max(sizes), of_clips=False)
    for m in range(1, 4):
        add(f"clips with {m} object{'s' if m > 1 else ''}", sum(len(c.objects) == m for c in clips))
    add("clips with identical-looking objects", sum(any(c.facts.places) for c in clips))
    add("clips with a turn", sum(any(len(o.legs) == 2 for o in c.objects) for c in clips))
    add("objects that turn", sum(len(o.legs) == 2 for c in clips for o in c.objects), of_clips=False)
    add("objects that stay still", sum(not o.legs for c in clips for o in c.objects), of_clips=False)
    add("least frames an occlusion hides an object, and an interaction lasts", least, of_clips=False)
    add("clips with an occlusion and re-appearance", sum(max(c.facts.hidden_runs) >= least for c in clips))
    add("clips with an interaction told", sum(bool(c.facts.interactions) for c in clips))
    add("clips with a camera pan", sum(c.pan is not None for c in clips))
    clauses: Counter = Counter()
    for c in clips:
        for o in c.objects:
            clauses[("still" if not o.legs else "straight" if len(o.legs) == 1 else "turn") + " motion"] += 1
        clauses["object named by its place"] += sum(bool(p) for p in c.facts.places)
        for e in c.facts.interactions:
            clauses["passes behind" if e.behind else "passes in front of"] += 1
        clauses["camera pans"] += c.pan is not None
    for clause in ("still motion", "straight motion", "turn motion", "object named by its place", "passes behind",
                   "passes in front of", "camera pans"):
        add(f"caption clauses: {clause}", clauses[clause], of_clips=False)
    changed = Counter(kind for c in clips for kind in c.contrast)
    for kind in CONTRASTS:  # what each clip changes from its group's first clip (one or two facts)
        add(f"contrast changes: {kind}", changed[kind], of_clips=False)
    looks = [looks_key(c) for c in clips]
    colours = [tuple(sorted(o.colour for o in c.objects)) for c in clips]
    words = [tuple(sorted(text[0].replace(",", " ").replace(";", " ").split())) for text in captions]
    for oracle, keys in (("looks only", looks), ("colours only", colours), ("caption words in any order", words)):
        for k, recall in expected_recall(keys).items():
            add(f"oracle reading {oracle}: text-to-video R@{k} (%)", round(recall, 1), of_clips=False)
    return rows
