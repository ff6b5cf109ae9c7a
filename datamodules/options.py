"""The option groups every datamodule shares, each field documented once here.

Datamodules take these as nested typed arguments (``clip``, ``loader``, ``keys``, ``synthetic``), which
LightningCLI's parser (jsonargparse) reads as option groups: ``--data.init_args.loader.batch_size=8``, or in
yaml ``loader: {batch_size: 8}``. The types do the checking: the parser refuses a value that does not fit
and names the option, before anything is built. The groups are frozen so that a default instance can be
shared safely by every datamodule that uses it. Data sets take the same groups as their datamodules.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from jsonargparse.typing import NonNegativeInt, PositiveInt

from datamodules.synthetic import SyntheticConfig
from datamodules.transforms import EvalResize, crop_area_range
from datamodules.video import EvalSampling


@dataclass(frozen=True, kw_only=True)
class FrameOptions:
    """How each frame becomes the model's input (images are clips of one frame).

    Attributes:
        image_size: square side of the model input, in pixels.
        crop_scale: area range of the random resized crop in training, as fractions of the frame
            (1.0, 1.0 disables cropping).
        horizontal_flip: random horizontal flips in training; off by default, since a flip reverses
            "left" / "right" in the pixels but not in captions, questions or class names.
    """

    image_size: PositiveInt = 64
    crop_scale: tuple[float, float] = (0.8, 1.0)
    horizontal_flip: bool = False

    def __post_init__(self) -> None:
        # A range is more than its type says (0 < low <= high <= 1); the parser reports this error too.
        object.__setattr__(self, "crop_scale", crop_area_range(self.crop_scale))


@dataclass(frozen=True, kw_only=True)
class ClipOptions(FrameOptions):
    """How a video clip becomes the model's input: its frames (``FrameOptions``) and how many.

    Attributes:
        num_frames: frames sampled per clip (spread over the clip; jittered in training).
        eval_sampling: which frames evaluation reads: ``middle`` (the middle frame of each of T equal parts) or
            ``linspace`` (``round(linspace(0, n - 1, T))``, the released TrajTok's evaluation).
        eval_resize: how evaluation frames become ``image_size`` squares: ``crop`` (shorter side resized, centre
            crop) or ``squash`` (the whole frame resized with Pillow's bicubic filter, aspect not kept: the
            released TrajTok's evaluation).
    """

    num_frames: PositiveInt = 8
    eval_sampling: EvalSampling = "middle"
    eval_resize: EvalResize = "crop"


@dataclass(frozen=True, kw_only=True)
class LoaderOptions:
    """How samples are batched and loaded.

    Attributes:
        batch_size: training samples per step and process.
        eval_batch_size: evaluation samples per batch and process; default ``batch_size``.
        num_workers: DataLoader worker processes per process (0: load in the main process).
    """

    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt | None = None
    num_workers: NonNegativeInt = 0

    def batch_size_for(self, train: bool) -> int:
        """The batch size of a training or an evaluation loader."""
        return self.batch_size if train else self.eval_batch_size or self.batch_size


@dataclass(frozen=True, kw_only=True)
class AnnotationKeys:
    """The key (JSONL / JSON) or column (CSV) names of annotation files, so that public data sets' own files can be
    read without conversion: ``--data.init_args.keys.caption=sentence``, or in yaml ``keys: {caption: sentence}``.
    Each kind of row uses its own keys (``datamodules.annotations``); the others are unused. The synthetic set's
    files are always read with the default names.

    Attributes:
        video: the video path, relative to the datamodule's ``root`` (every video row).
        start: the clip's start, in seconds (optional in every video row).
        end: the clip's end, in seconds (optional in every video row).
        mask: the pseudo-label masks file (optional in every video row).
        graph: the trajectory graph file (optional in every video row).
        caption: the caption, a string or a list of them (video-text and image-text rows).
        label: the class, a name or an integer index (labelled rows).
        question: the question (QA rows).
        answer: the answer (QA rows).
        options: the multiple-choice options, absent for an open-ended question (QA rows).
        type: the kind of question, by which accuracy is also reported; optional (QA rows).
        image: the image path, relative to the datamodule's ``root`` (image-text rows).
    """

    video: str = "video"
    start: str = "start"
    end: str = "end"
    mask: str = "mask"
    graph: str = "graph"
    caption: str = "caption"
    label: str = "label"
    question: str = "question"
    answer: str = "answer"
    options: str = "options"
    type: str = "type"
    image: str = "image"


@dataclass(frozen=True, kw_only=True)
class SyntheticOptions(SyntheticConfig):
    """The embedded synthetic shapes set, served when a datamodule is given no annotation files; generated
    on first use into ``cache_dir``. The other attributes are the generator's (``SyntheticConfig``).

    Attributes:
        cache_dir: where the set is generated; default ``$TRAJTOK_CACHE/synthetic`` or
            ``~/.cache/trajtok/synthetic``.
    """

    cache_dir: str | None = None

    def config(self) -> SyntheticConfig:
        """The generator's configuration of this set."""
        return SyntheticConfig(**{f.name: getattr(self, f.name) for f in fields(SyntheticConfig)})
