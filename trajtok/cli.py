"""The ``trajtok`` command: Lightning's CLI over ``TrajTokModule`` and any LightningDataModule.

``trajtok fit|validate|test|predict --config configs/clip.yaml``; ``--print_config`` shows the resolved
config. Unknown keys and ill-typed values are rejected by jsonargparse before anything is built or trained.

``trajtok visualize --config CONFIG [--ckpt_path CKPT] (--video FILE... | --split test [--limit N]) --out DIR``
paints the trajectories of the model built from the same config over clips (``trajtok.visualize``); other
``--model.*`` / ``--data.*`` options are config overrides, as for ``fit``.

``trajtok pseudo-label --config configs/pseudo_labels.yaml`` writes panoptic trajectory pseudo-labels of videos
(``trajtok.pseudo_labels``) through Lightning's predict loop.

``trajtok convert SRC.pth OUT.ckpt`` writes a released TrajTok checkpoint as this project's Lightning checkpoint
(``trajtok.conversion``); ``--ckpt_path`` of every command also reads a released file as downloaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.cli import LightningCLI

from datamodules.base import SPLIT_STAGES
from datamodules.video import BadSampleError
from trajtok.checkpoint import AtomicCheckpointIO, read_checkpoint
from trajtok.conversion import build_module, convert_command, load_model_weights
from trajtok.errors import UserError, report_user_errors
from trajtok.module import TrajTokModule
from trajtok.release import (
    DEFAULT_TEXT_VOCAB,
    is_release,
    official_model,
    read_layout,
    release_state,
)


class TrajTokCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, **kwargs):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})  # re-runs into one folder must not fail
        kwargs.setdefault("auto_configure_optimizers", False)  # the module owns AdamW + warm-up cosine
        super().__init__(
            TrajTokModule,
            L.LightningDataModule,
            subclass_mode_data=True,
            args=args,
            **kwargs,
        )

    def instantiate_trainer(self, **kwargs):
        """The trainer, writing checkpoints atomically (``AtomicCheckpointIO``) unless the config gives its own
        checkpoint IO plugin."""
        plugins = self._get(self.config_init, "trainer", default={}).get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--allow_untrained", type=bool, default=False,
            help="validate / test / predict without --ckpt_path: evaluate the weights the config builds (its "
                 "initialisation and any pretrained parts). Without this option that is an error, so that no table "
                 "of an untrained model is printed by mistake.")

    def _parse_ckpt_path(self) -> None:
        """Lightning's (lay the checkpoint's hyper-parameters over the config), reading the checkpoint as
        ``--weights_only`` says: Lightning's own always reads it weights-only, so a trusted checkpoint that needs
        ``--weights_only=false`` failed before the option was used.

        A released TrajTok file (``trajtok.release``) lays the model that computes its function over the config
        (its text vocabulary stays the config's, if it names one); its weights are loaded once the model is built,
        and the subcommand then runs without a checkpoint to restore: ``fit`` fine-tunes from the release (from a
        ``trajtok convert`` checkpoint too)."""
        self._release = None
        config = self.config.get(self.config.get("subcommand") or "")
        path = config.get("ckpt_path") if config else None
        if not path or not Path(path).is_file():
            return
        checkpoint = read_checkpoint(path, weights_only=config.get("weights_only") is not False)
        if is_release(checkpoint):
            self._release = (path, checkpoint)
            layout = read_layout(release_state(checkpoint, path), path)
            hparams = official_model(layout, self._config_text_vocab(config) or DEFAULT_TEXT_VOCAB)
            before = {part: config["model"][part] for part in hparams}
            for part in hparams:  # replaced whole, not merged: no option of the config's model survives
                config["model"][part] = None
            self.config = self.parser.parse_object({self.config.subcommand: {"model": hparams}}, self.config)
            warn_replaced(before, self.config[self.config.subcommand]["model"], path)
            return
        if "release" in checkpoint and "optimizer_states" not in checkpoint and self.config.subcommand == "fit":
            self._release = (path, checkpoint)  # a converted release: fine-tuned from, not resumed
        hparams = checkpoint.get("hyper_parameters", {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({self.config.subcommand: {"model": hparams}}, self.config)

    @staticmethod
    def _config_text_vocab(config) -> str | None:
        """The tokenizer vocabulary the config's text encoder names, if any."""
        try:
            return config["model"]["head"]["init_args"]["text_encoder"]["init_args"]["tokenizer_path"]
        except (KeyError, TypeError):
            return None

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        if getattr(self, "_release", None) is not None:
            path, checkpoint = self._release
            load_model_weights(self.model, path, checkpoint)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if getattr(self, "_release", None) is not None and "ckpt_path" in kwargs:
            kwargs["ckpt_path"] = None  # the weights are in the model; a release has no training state to restore
        return kwargs

    def before_instantiate_classes(self) -> None:
        """Checkpoints are data: ``--ckpt_path`` is read with ``weights_only=True`` (no code runs while unpickling)
        unless ``--weights_only=false`` is given for a checkpoint you trust. Evaluating without a checkpoint
        needs ``--allow_untrained``."""
        config = self.config.get(self.subcommand) if self.subcommand else None
        if config is None:
            return
        if "weights_only" in config and config["weights_only"] is None:
            config["weights_only"] = True
        if self.subcommand in EVALUATIONS and config.get("ckpt_path") is None:
            if not config.get("allow_untrained"):
                raise UserError(
                    f"no --ckpt_path: {self.subcommand} would run the untrained initialisation of the config and "
                    "print numbers that mean nothing. Give --ckpt_path=<a checkpoint of this config>, or "
                    "--allow_untrained=true to evaluate the weights the config builds on purpose.")
            warnings.warn(f"--allow_untrained: {self.subcommand} runs the weights the config builds, not a trained "
                          "checkpoint", UserWarning, stacklevel=1)


def _flat(value, prefix: str = "") -> dict[str, object]:
    """A config value (namespaces and dicts nested) as ``{dotted.key: leaf}``."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def warn_replaced(before: dict, model, source: str) -> None:
    """Warn about the options of the config's tokenizer and head that a release file's model replaced."""
    changed = []
    for part, old in before.items():
        old, new = _flat(old, f"model.{part}."), _flat(model[part], f"model.{part}.")
        changed += [f"{key} {old[key]!r} -> {new.get(key, '(unset)')!r}" for key in sorted(old)
                    if old[key] != new.get(key, "(unset)")]
    if changed:
        warnings.warn(f"{source}: the released model replaces the config's ({len(changed)} options differ, e.g. "
                      + "; ".join(changed[:6]) + ")", UserWarning, stacklevel=2)


#: Subcommands that evaluate a model: they need a checkpoint (or --allow_untrained).
EVALUATIONS = ("validate", "test", "predict")


def visualize_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trajtok visualize",
        description="Paint the trajectories a model's tokenizer finds over video clips: <stem>_overlay.mp4 and "
        "<stem>_sheet.png per clip. Options not listed here (--model.*, --data.*, ...) override the config.",
        allow_abbrev=False,
    )
    parser.add_argument("--config", required=True, action="append",
                        help="the yaml the model was trained with (as for fit; repeat it to compose, e.g. with "
                             "configs/layouts/lite.yaml)")
    parser.add_argument("--ckpt_path", help="a Lightning checkpoint of that config, or a released TrajTok model.pth "
                        "(its model replaces the config's); without it the weights are the "
                        "config's initialisation")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", nargs="+", metavar="FILE", help="video files to visualise")
    source.add_argument("--split", choices=tuple(SPLIT_STAGES), help="visualise the clips of the config's data split")
    parser.add_argument("--limit", type=int, help="with --split: the first N clips (default: all)")
    parser.add_argument("--out", required=True, help="folder for the outputs (created)")
    parser.add_argument("--num_frames", type=int, help="frames sampled per clip (default: the data's num_frames)")
    parser.add_argument("--image_size", type=int, help="model input side (default: the data's image_size)")
    parser.add_argument("--display_size", type=int, default=256, help="side of the written frames (default 256)")
    parser.add_argument("--max_columns", type=int, default=8, help="frames shown in the contact sheet (default 8)")
    parser.add_argument("--fps", type=int, default=4, help="frame rate of the overlay mp4 (default 4)")
    parser.add_argument("--device", default="auto", help="torch device (default: cuda if available, else cpu)")
    return parser


def split_clips(datamodule, split: str, limit: int | None) -> list[tuple[str, float | None, float | None]]:
    """``(video, start_sec, end_sec)`` of the first ``limit`` distinct clips of a split of a clip datamodule
    (QA data repeats a clip per question; it is shown once)."""
    if not hasattr(datamodule, "annotation_path") or not hasattr(datamodule, "datasets"):
        raise ValueError(f"--split: {type(datamodule).__name__} does not expose annotated splits; use --video")
    if datamodule.annotation_path(split) is None:
        raise ValueError(f"--split {split}: the config's data has no {split} split (set {split}_annotations)")
    datamodule.setup(SPLIT_STAGES[split])
    clips = list(dict.fromkeys((r.video, r.start_sec, r.end_sec) for r in datamodule.datasets[split].records))
    return clips if limit is None else clips[:limit]


def unique_stems(paths: list[str]) -> list[str]:
    """Output stems: each file's name without extension, numbered where two clips would share one."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    seen: dict[str, int] = {}
    out = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if stems.count(stem) == 1 else f"{stem}_{seen[stem]}")
    return out


def visualize_command(argv: list[str]) -> None:
    """``trajtok visualize``: build the model (and data) from a fit config with ``TrajTokCLI(run=False)``, load
    the checkpoint strictly, and write an overlay video and a contact sheet per clip. One line per clip on stdout:
    path, frames, trajectories, valid tokens and the files written."""
    from trajtok.visualize import visualize_clip

    parser = visualize_parser()
    opts, overrides = parser.parse_known_args(argv)
    if opts.limit is not None and (opts.split is None or opts.limit < 1):
        parser.error("--limit needs --split and a positive N")
    # Fail on missing files before the (slow) model build.
    if opts.ckpt_path and not os.path.isfile(opts.ckpt_path):
        parser.error(f"--ckpt_path {opts.ckpt_path}: no such file")
    missing = [path for path in opts.video or () if not os.path.isfile(path)]
    if missing:
        parser.error(f"--video: no such file: {', '.join(missing)}")
    checkpoint = read_checkpoint(opts.ckpt_path) if opts.ckpt_path else None
    # The same parser as fit: unknown override keys fail here, named by jsonargparse.
    with warnings.catch_warnings():
        # Lightning warns when args are given while sys.argv has others: here they are ours, parsed above.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = TrajTokCLI(args=[*(a for c in opts.config for a in ("--config", c)), *overrides], run=False)
    model, datamodule = cli.model, cli.datamodule
    if checkpoint is not None and is_release(checkpoint):
        # The released model replaces the config's, as --ckpt_path does for the other commands.
        layout = read_layout(release_state(checkpoint, opts.ckpt_path), opts.ckpt_path)
        hparams = official_model(layout, TrajTokCLI._config_text_vocab(cli.config) or DEFAULT_TEXT_VOCAB)
        before = {part: cli.config["model"][part] for part in hparams}
        replaced = cli.config.clone()
        for part in hparams:
            replaced["model"][part] = None
        warn_replaced(before, cli.parser.parse_object({"model": hparams}, replaced)["model"], opts.ckpt_path)
        model = build_module(hparams)
    if opts.ckpt_path:
        load_model_weights(model, opts.ckpt_path, checkpoint)
    else:
        warnings.warn(
            f"no --ckpt_path: visualising the untrained initialisation of {' + '.join(opts.config)}; the trajectories mean "
            "nothing until the model is trained",
            UserWarning,
            stacklevel=1,
        )
    clip = getattr(datamodule, "clip", None)  # a JointDataModule answers with its videos'
    num_frames = opts.num_frames or getattr(clip, "num_frames", None) or 16
    image_size = opts.image_size or getattr(clip, "image_size", None)
    if image_size is None:
        parser.error(f"{type(datamodule).__name__} has no image_size: give --image_size")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if opts.device == "auto" else opts.device
    if opts.video:
        clips = [(path, None, None) for path in opts.video]
        skip_bad = False
    else:
        clips = split_clips(datamodule, opts.split, opts.limit)
        skip_bad = getattr(datamodule, "on_bad_video", "raise") == "skip"
    done = 0
    for (path, start, end), stem in zip(clips, unique_stems([c[0] for c in clips])):
        try:
            result = visualize_clip(
                model, path, opts.out, num_frames=num_frames, image_size=image_size, device=device,
                display_size=opts.display_size, fps=opts.fps, max_columns=opts.max_columns,
                start_sec=start, end_sec=end, stem=stem,
            )
        except BadSampleError as e:
            if not skip_bad:
                raise
            print(f"skipping {e}", file=sys.stderr)
            continue
        done += 1
        print(f"{path}\tframes={result['frames']}\ttrajectories={result['trajectories']}\t"
              f"valid_tokens={result['valid_tokens']}\t{result['overlay']}\t{result['sheet']}", flush=True)
    if not done:
        raise ValueError("no clip could be visualised")


class PseudoLabelCLI(LightningCLI):
    """``trajtok pseudo-label``: Lightning's predict loop over ``PseudoLabeller`` and ``PseudoLabelDataModule``
    (``configs/pseudo_labels.yaml``); the config's ``PseudoLabelWriter`` writes the files."""

    def __init__(self, args: list[str]) -> None:
        from datamodules.videos_to_label import PseudoLabelDataModule
        from trajtok.pseudo_labels import PseudoLabeller

        super().__init__(PseudoLabeller, PseudoLabelDataModule, args=["predict", *args], save_config_callback=None,
                         auto_configure_optimizers=False)

    def after_predict(self) -> None:
        if not any(type(c).__name__ == "PseudoLabelWriter" for c in self.trainer.callbacks):
            warnings.warn("no PseudoLabelWriter in trainer.callbacks: nothing was written", UserWarning, stacklevel=1)


def pseudo_label_command(argv: list[str]) -> None:
    """``trajtok pseudo-label --config configs/pseudo_labels.yaml [overrides]``: label videos (see
    ``trajtok.pseudo_labels``). ``--trainer.devices 8 --trainer.strategy ddp`` splits the videos over processes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        PseudoLabelCLI(argv)


def main(args: list[str] | None = None) -> None:
    """``trajtok``: mistakes in what the user gave (configuration, data, checkpoint) end in one message naming
    the file, row or option and exit status 2 (``TRAJTOK_TRACEBACK=1`` shows the traceback); programming errors
    keep theirs (``trajtok.errors``)."""
    # Hub downloads are never attempted at run time; weights load from local paths or the cache. huggingface_hub
    # reads the variable once, when imported (lightning imports it before this runs): its constant is set to match.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = os.environ["HF_HUB_OFFLINE"].upper() in {"1", "ON", "YES", "TRUE"}
    argv = args if args is not None else sys.argv[1:]
    command = "trajtok " + (argv[0] if argv and not argv[0].startswith("-") else "")
    with report_user_errors(command.strip()):
        if argv and argv[0] == "visualize":
            visualize_command(argv[1:])
            return
        if argv and argv[0] == "pseudo-label":
            pseudo_label_command(argv[1:])
            return
        if argv and argv[0] == "convert":
            convert_command(argv[1:])
            return
        # args=None when run as a command: LightningCLI then reads sys.argv itself (given args it warns that
        # sys.argv holds others, on every command).
        TrajTokCLI(args=args)


if __name__ == "__main__":
    main()
