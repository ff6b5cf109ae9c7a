"""Exporting a tokenizer or a trained model (tokenizer + head) as a folder that rebuilds without Lightning.

An export is two files:

- ``config.json``: ``{"format": "trajtok-export", "format_version": 1, "model": {"class_path": ..., "init_args":
  {...}}}``. ``model`` is the jsonargparse description of what to build, nested ``class_path`` / ``init_args``
  for sub-modules: the ``model:`` section of a yaml config, resolved as ``trajtok fit --print_config`` shows it
  (every default written out, so a later change of a default in the code cannot change what an export builds).
  For a ``TrajTokModule`` it is ``{"class_path": "trajtok.module.TrajTokModule", "init_args": <model section>}``.
  Warm-start paths (``tokenizer_checkpoint``, ``segmenter_checkpoint``) are cleared: the exported weights
  replace what they would load, and the file they name need not exist where the export is loaded.
- ``model.safetensors``: the ``state_dict``. Tensors that share memory (tied weights) are stored once and the
  other names recorded as aliases; non-contiguous ones are made contiguous. Non-tensor entries (``get_extra_state``,
  e.g. the probe head's class names, which fix what each classifier row means) go as JSON into the file's
  metadata, next to the weights they belong to.

Loading (``from_pretrained``) builds the object from the config with jsonargparse, which checks every class path
and argument (an unknown argument fails before anything is built), then loads the weights strictly: every key
must be there and nothing may be left over. Frozen pretrained sub-models (``FrozenVideoFeatures`` and frozen LLMs
with ``pretrained=True``) are kept out of ``state_dict`` by ``trajtok.hf.keep_out_of_state_dict``, so they are
not in the export either: they are reloaded from the ``name_or_path`` written in the config, which must be
reachable (hub cache or local folder) where the export is loaded. Weights are read with safetensors only: no
pickle is ever loaded. The config does name classes to import and call, as a yaml config does; jsonargparse only
accepts ``torch.nn.Module`` subclasses there, so load exports you trust.

Why not ``huggingface_hub.PyTorchModelHubMixin`` (or ``ModelHubMixin``)? Its config is the ``__init__`` keyword
arguments captured when the object is built, and arguments that are not JSON-serialisable are dropped silently
(2.4: ``_is_jsonable`` filter): the nested tokenizer, pixel encoder, head and text encoder are exactly such
arguments, so a reload would build the defaults instead. Custom ``coders`` could encode them, but that would be
a re-implementation of jsonargparse's class_path / init_args, and the mixin must be inherited by every class to
export (``TrajTok``, ``FeatureTrajTok``, ``TrajTokModule``...). Its weights go through ``safetensors.torch
.save_model``, which rejects the non-tensor extra state (class names), and it loads non-strictly by default and
falls back to ``pytorch_model.bin`` (a pickle) on the hub. The folder layout is the same (``config.json`` +
``model.safetensors``), so ``huggingface_hub.upload_folder`` / ``snapshot_download`` move exports as they are.

``python -m trajtok.export CONFIG CKPT OUT [--part tokenizer]`` exports a Lightning run (see
``export_checkpoint``).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from trajtok.checkpoint import checkpoint_state, load_state_strictly
from trajtok.files import atomic_path, write_atomic

FORMAT = "trajtok-export"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODULE_CLASS_PATH = "trajtok.module.TrajTokModule"
#: Init arguments naming a checkpoint to warm-start from: cleared in exports, whose own weights replace it.
WARM_START_ARGS = ("tokenizer_checkpoint", "segmenter_checkpoint")
# safetensors metadata keys (string values).
_META_VERSION = "trajtok_format_version"
_META_ALIASES = "trajtok_aliases"
_META_EXTRA = "trajtok_extra_state"

Part = Literal["model", "tokenizer"]


def _parser():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--model", type=nn.Module)
    return parser


def _clear_warm_starts(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: None if k in WARM_START_ARGS else _clear_warm_starts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clear_warm_starts(v) for v in value]
    return value


def _parse(config: dict[str, Any], source: str):
    """``(parser, namespace)`` of a description checked by jsonargparse (warm-start paths cleared)."""
    from jsonargparse import ArgumentError

    if not isinstance(config, dict) or "class_path" not in config:
        raise ValueError(f"{source}: a model description needs a 'class_path' (and 'init_args'), got {config!r}")
    parser = _parser()
    try:
        namespace = parser.parse_object({"model": _clear_warm_starts(copy.deepcopy(config))})
    except ArgumentError as error:
        raise ValueError(f"{source}: the model description does not build: {error}") from error
    return parser, namespace


def describe_module(model_section: dict[str, Any]) -> dict[str, Any]:
    """A yaml's ``model:`` section as a build description: kept as is when it has a ``class_path`` (subclass
    mode), else the init arguments of ``TrajTokModule`` (the ``trajtok`` CLI's model class)."""
    if not isinstance(model_section, dict):
        raise TypeError(f"a model description must be a mapping, got {type(model_section).__name__}")
    if "class_path" in model_section:
        return model_section
    return {"class_path": MODULE_CLASS_PATH, "init_args": model_section}


def resolve_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check a ``{"class_path", "init_args"}`` description with jsonargparse and return it normalised: full class
    paths, every default written out (``None`` included), warm-start checkpoint paths cleared. Raises
    ``ValueError`` naming ``source`` and the offending key for an unknown class or argument or an ill-typed
    value."""
    parser, namespace = _parse(config, source)
    return yaml.safe_load(parser.dump(namespace, skip_none=False))["model"]


def instantiate(config: dict[str, Any], source: str = "config") -> nn.Module:
    """Build the module a ``{"class_path", "init_args"}`` description names (nested descriptions included), as
    LightningCLI would; ``source`` names where the description came from in errors."""
    parser, namespace = _parse(config, source)
    return parser.instantiate(namespace).model


def _import_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _storable_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, Any]]:
    """Split a ``state_dict`` into what safetensors stores: ``(tensors, aliases, extra)``.

    ``tensors``: CPU, contiguous, no two sharing memory (``save_file`` refuses shared tensors). Identical views
    of one storage (tied weights) are kept once under their first name in sorted order; ``aliases`` maps each
    other name to it. Other partial overlaps are copied. ``extra``: the non-tensor entries (``_extra_state``),
    which must be JSON-serialisable.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    extra: dict[str, Any] = {}
    seen: dict[tuple, str] = {}
    for name in sorted(state):
        value = state[name]
        if not isinstance(value, torch.Tensor):
            try:
                json.dumps(value)
            except TypeError as error:
                raise TypeError(f"state_dict entry {name!r} is neither a tensor nor JSON-serialisable: {error}") from None
            extra[name] = value
            continue
        if value.device.type == "meta":
            raise ValueError(f"state_dict entry {name!r} is on the meta device: it has no values to export")
        view = (value.device, value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
                value.stride(), value.dtype)
        if value.numel() and view in seen:
            aliases[name] = seen[view]
            continue
        seen[view] = name
        tensors[name] = value.detach()
    owners: dict[tuple, int] = {}
    for value in tensors.values():
        if value.numel():
            key = (value.device, value.untyped_storage().data_ptr())
            owners[key] = owners.get(key, 0) + 1
    for name, value in tensors.items():
        shared = value.numel() and owners[(value.device, value.untyped_storage().data_ptr())] > 1
        value = value.to("cpu").contiguous()
        tensors[name] = value.clone() if shared else value
    return tensors, aliases, extra


def save_weights(module: nn.Module, path: str | os.PathLike) -> None:
    """``module.state_dict()`` as a safetensors file (see ``_storable_state``)."""
    tensors, aliases, extra = _storable_state(module.state_dict())
    metadata = {"format": "pt", _META_VERSION: str(FORMAT_VERSION), _META_ALIASES: json.dumps(aliases),
                _META_EXTRA: json.dumps(extra)}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def load_weights(path: str | os.PathLike) -> dict[str, Any]:
    """The ``state_dict`` written by ``save_weights``: tensors, aliases restored, extra state decoded."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            state: dict[str, Any] = {name: f.get_tensor(name) for name in list(f.keys())}
    except SafetensorError as error:
        raise ValueError(f"{path}: not a readable safetensors file: {error}") from error
    if _META_VERSION not in metadata:
        raise ValueError(f"{path}: not a trajtok export (no {_META_VERSION!r} in its metadata)")
    for name, target in json.loads(metadata.get(_META_ALIASES, "{}")).items():
        if target not in state:
            raise ValueError(f"{path}: alias {name!r} points to {target!r}, which the file does not hold")
        state[name] = state[target]
    state.update(json.loads(metadata.get(_META_EXTRA, "{}")))
    return state


def save_pretrained(module_or_tokenizer: nn.Module, directory: str | os.PathLike, config: dict[str, Any]) -> Path:
    """Export a tokenizer or a whole ``TrajTokModule`` to ``directory`` (created): ``config.json`` +
    ``model.safetensors``.

    ``config`` describes how to build the object: ``{"class_path": ..., "init_args": {...}}``; for a
    ``TrajTokModule`` the yaml's ``model:`` section as is (no ``class_path``) is accepted too. It is checked with
    jsonargparse and must name the object's own class; it is written normalised (see ``resolve_config``). The
    description and the weights must match, which is checked when the export is loaded, not here (that would
    build a second copy of the model). Returns the directory.
    """
    directory = Path(directory)
    if isinstance(config, dict) and "class_path" not in config and _is_module(module_or_tokenizer):
        config = describe_module(config)
    resolved = resolve_config(config, source=f"config for {directory}")
    built = _import_class(resolved["class_path"])
    if built is not type(module_or_tokenizer):
        raise ValueError(f"the config builds {resolved['class_path']}, but the object to export is a "
                         f"{type(module_or_tokenizer).__module__}.{type(module_or_tokenizer).__qualname__}")
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(module_or_tokenizer, directory / WEIGHTS_NAME)
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": resolved}
    write_atomic(directory / CONFIG_NAME, json.dumps(document, indent=2) + "\n")
    return directory


def _is_module(obj: nn.Module) -> bool:
    from trajtok.module import TrajTokModule

    return isinstance(obj, TrajTokModule)


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``model`` description of an export's ``config.json``, its format and version checked."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such export config")
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{path}: not a trajtok export config (expected \"format\": {FORMAT!r})")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version!r} is not supported (this version reads {FORMAT_VERSION})")
    if not isinstance(document.get("model"), dict):
        raise ValueError(f"{path}: no 'model' description")
    return document["model"]


def from_pretrained(directory: str | os.PathLike) -> nn.Module:
    """Rebuild an export of ``save_pretrained``: the object its ``config.json`` describes, with the weights of its
    ``model.safetensors`` loaded strictly, in eval mode. Errors name the file at fault."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    config = read_config(config_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: no such weights file")
    module = instantiate(config, source=str(config_path))
    load_state_strictly(module, load_weights(weights_path), source=str(weights_path))
    return module.eval()


def export_checkpoint(config_yaml: str | os.PathLike, ckpt_path: str | os.PathLike, directory: str | os.PathLike,
                      part: Part = "model") -> Path:
    """Export a Lightning run: the ``model:`` section of ``config_yaml`` (the ``config.yaml`` LightningCLI saves in
    the run folder, or a ``configs/*.yaml``) with the weights of ``ckpt_path``.

    ``part="model"`` exports the whole ``TrajTokModule`` (tokenizer + head), ``part="tokenizer"`` the tokenizer
    alone (its description and the checkpoint's ``tokenizer.*`` weights). The weights must fit exactly.
    """
    if part not in ("model", "tokenizer"):
        raise ValueError(f"part={part!r}: must be 'model' or 'tokenizer'")
    config_yaml = str(config_yaml)
    if not os.path.isfile(config_yaml):
        raise FileNotFoundError(f"{config_yaml}: no such config file")
    document = yaml.safe_load(Path(config_yaml).read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("model"), dict):
        raise ValueError(f"{config_yaml}: no 'model:' section")
    config = describe_module(document["model"])
    state = checkpoint_state(ckpt_path)
    if part == "tokenizer":
        tokenizer = config.get("init_args", {}).get("tokenizer")
        if not isinstance(tokenizer, dict):
            raise ValueError(f"{config_yaml}: no model tokenizer description (model.tokenizer)")
        config = tokenizer
        state = {k[len("tokenizer."):]: v for k, v in state.items() if k.startswith("tokenizer.")}
    module = instantiate(config, source=config_yaml)
    load_state_strictly(module, state, source=str(ckpt_path))
    return save_pretrained(module, directory, config)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m trajtok.export",
        description="Export a Lightning run (the model: section of its config and the weights of a checkpoint) as "
        "OUT/config.json + OUT/model.safetensors, loadable with trajtok.export.from_pretrained(OUT).",
    )
    parser.add_argument("config", help="the run's config.yaml (or a configs/*.yaml) with a model: section")
    parser.add_argument("ckpt", help="the Lightning checkpoint")
    parser.add_argument("out", help="the export folder (config.json + model.safetensors)")
    parser.add_argument("--part", choices=("model", "tokenizer"), default="model")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as the trajtok CLI: frozen models load from local paths/cache
    out = export_checkpoint(args.config, args.ckpt, args.out, part=args.part)
    print(f"exported the {args.part} to {out}")


if __name__ == "__main__":
    main()
