"""Loading transformers models offline-safely: by hub id, by local folder, or built from a config only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


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
