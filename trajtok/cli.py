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

import os
import sys
import warnings
from pathlib import Path

import lightning as L
import yaml
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_warn

from trajtok.checkpoint import AtomicCheckpointIO, read_checkpoint
from trajtok.conversion import convert_command, load_model_weights
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

    def parse_arguments(self, parser, args) -> None:
        """Lightning's, with each config file's ``extends`` put before it on the command line (``with_bases``),
        and the config files the command line names remembered: they name the run folder (``run_folder``)."""
        argv = sys.argv[1:] if args is None else args
        if not isinstance(argv, (list, tuple)):  # a dict or Namespace: no files
            self._config_files = []
            super().parse_arguments(parser, args)
            return
        if args is not None and len(sys.argv) > 1:
            rank_zero_warn(f"LightningCLI's args parameter is given while sys.argv has arguments too: sys.argv[1:]="
                           f"{sys.argv[1:]}, args={args}; args are parsed")
        self._config_files = command_line_configs(list(argv))
        self.config = parser.parse_args(with_bases(list(argv)))

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--extends", type=str | list[str] | None, default=None,
            help="in a config file: the config file(s) it builds on, relative to its folder, read before it "
                 "(the command line gets --config <base> before --config <file>)")
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
        """The run folder is placed (``place_run``). Checkpoints are data: ``--ckpt_path`` is read with
        ``weights_only=True`` (no code runs while unpickling) unless ``--weights_only=false`` is given for a
        checkpoint you trust. Evaluating without a checkpoint needs ``--allow_untrained``."""
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        if config is None:
            return
        place_run(config, getattr(self, "_config_files", []))
        if not self.subcommand:
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


#: Stand for the run folder and for the overlays of the command line in any option of a config, so that configs
#: name no run folder and a composed config cannot write into another's run: ``${run}`` is ``runs/clip+peers_vit3d``
#: and ``${overlays}`` is ``+peers_vit3d`` for ``--config configs/clip.yaml --config configs/peers/vit3d.yaml``
#: (a later stage reads ``runs/segmenter${overlays}/...``: the earlier stage composed with the same overlays).
RUN, OVERLAYS = "${run}", "${overlays}"


def config_options(argv: list[str]) -> list[tuple[int, int, str]]:
    """``(start, end, file)`` of each config option in ``argv``: ``--config F``, ``--config=F``, ``-c F``, ``-cF``."""
    found, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c") and i + 1 < len(argv):
            found.append((i, i + 2, argv[i + 1]))
            i += 2
            continue
        if arg.startswith("--config="):
            found.append((i, i + 1, arg.split("=", 1)[1]))
        elif arg.startswith("-c") and not arg.startswith("--") and len(arg) > 2:
            found.append((i, i + 1, arg[2:].removeprefix("=")))
        i += 1
    return found


def command_line_configs(argv: list[str]) -> list[str]:
    """The config files ``argv`` names, in order (``config_options``)."""
    return [file for _, _, file in config_options(argv)]


def with_bases(argv: list[str]) -> list[str]:
    """``argv`` with every config option preceded by the files it ``extends`` (recursively, bases first, each
    file once: ``--config configs/clip_cotrain.yaml`` reads configs/defaults.yaml, configs/clip.yaml, then it).
    jsonargparse's own nested ``config:`` key is not used: it drops the base's values of any group the including
    file also sets. ``--extends`` on the command line is an error: it belongs in a config file."""
    if any(arg == "--extends" or arg.startswith("--extends=") for arg in argv):
        raise UserError("--extends: name the config a config builds on inside that file ('extends: base.yaml'); "
                        "on the command line, give both: --config base.yaml --config file.yaml")
    seen: set[Path] = set()

    def chain(path: str, stack: tuple[Path, ...]) -> list[str]:
        resolved = Path(path).resolve()
        if resolved in stack:
            raise UserError(f"{path}: 'extends' loops back to itself ({' -> '.join(map(str, (*stack, resolved)))})")
        if resolved in seen or not resolved.is_file():
            return [] if resolved in seen else [path]
        seen.add(resolved)
        try:
            content = yaml.safe_load(resolved.read_text())
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML ({e})") from e
        bases = content.get("extends") if isinstance(content, dict) else None
        out = []
        for base in [bases] if isinstance(bases, str) else bases or []:
            base_path = resolved.parent / base
            if not base_path.is_file():
                raise UserError(f"{path}: extends {base!r}, but there is no file {base_path}")
            out += chain(str(base_path), (*stack, resolved))
        return [*out, path]

    result, last = [], 0
    for start, end, file in config_options(argv):
        result += argv[last:start]
        for path in chain(file, ()):
            result += ["--config", path]
        last = end
    return result + argv[last:]


def config_name(path: str) -> str:
    """A config file's name in run folders: its path below the nearest ``configs`` folder, ``/`` as ``_``, without
    the suffix (``configs/peers/vit3d.yaml`` -> ``peers_vit3d``); in no ``configs`` folder, its folder's name and
    its stem (``~/exp/clip.yaml`` -> ``exp_clip``), so that it does not share a run with ``configs/clip.yaml``."""
    parts = Path(path).resolve().with_suffix("").parts
    if "configs" in parts[:-1]:
        below = len(parts) - 1 - parts[::-1].index("configs")
        return "_".join(parts[below + 1:])
    return "_".join(parts[-2:])


def run_names(config_files: list[str]) -> list[str]:
    """``config_name`` of each of the config files given on the command line (the files they extend add none)."""
    return [config_name(f) for f in config_files if Path(f).is_file()]


def run_folder(config_files: list[str]) -> str:
    """``runs/<name>[+<name>...]``: the run folder of the config files given on the command line, in order
    (``--config configs/clip.yaml --config configs/peers/vit3d.yaml`` -> ``runs/clip+peers_vit3d``); ``runs/default``
    without one."""
    return os.path.join("runs", "+".join(run_names(config_files)) or "default")


def place_run(config, config_files: list[str]) -> str:
    """Set ``trainer.default_root_dir`` (unless given) to the run folder of ``config_files``, replace ``${run}`` and
    ``${overlays}`` in every option, and drop ``extends`` (its files are read already: a saved config is whole);
    returns the folder."""
    trainer = config["trainer"]
    run = trainer.get("default_root_dir") or run_folder(config_files)
    trainer["default_root_dir"] = run
    overlays = "".join(f"+{name}" for name in run_names(config_files)[1:])

    def substitute(value):
        if isinstance(value, str):
            return value.replace(RUN, run).replace(OVERLAYS, overlays)
        if isinstance(value, list):
            return [substitute(v) for v in value]
        if hasattr(value, "items"):  # a jsonargparse Namespace or a dict
            for key, item in list(value.items()):
                value[key] = substitute(item)
        return value

    for key, value in list(config.items()):
        if key not in ("config", "trainer.default_root_dir"):
            config[key] = substitute(value)
    if "extends" in config:
        config["extends"] = None
    return run


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
            from trajtok.visualize import visualize_command

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
