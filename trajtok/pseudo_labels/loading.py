"""Where the pseudo-labelling models load from, checked before transformers is asked, so that a mistake is one
message naming the option: a local folder is used as it is; anything else must be a hub id, which the command
(run with ``HF_HUB_OFFLINE=1``, ``trajtok.cli``) takes from the hub cache only, so it must have been downloaded.
A hub id downloads only where the user set ``HF_HUB_OFFLINE=0``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from trajtok.errors import UserError
from trajtok.hf import resolve_path


def model_source(model: str, option: str) -> str:
    """The local folder or hub id to load ``model`` (the value of ``option``) from (``package:`` names resolved,
    ``trajtok.hf.resolve_path``), or a ``UserError`` naming ``option`` when it is a missing folder, a file, or a
    hub id not downloaded while the hub is offline."""
    from huggingface_hub import is_offline_mode, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        path = resolve_path(model)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"{option}: {e}") from e
    local = os.path.expanduser(path)
    if os.path.isdir(local):
        return path
    if os.path.exists(local):
        raise UserError(f"{option}={model}: a file; a local model is a folder (as save_pretrained or "
                        "`hf download --local-dir` writes it)")
    try:
        validate_repo_id(path)
    except HFValidationError:
        raise UserError(f"{option}={model}: no such folder") from None
    if is_offline_mode() and not isinstance(try_to_load_from_cache(path, "config.json"), str):
        raise UserError(f"{option}={model}: no such local folder, and the hub model {model} is not downloaded "
                        f"(HF_HUB_OFFLINE=1: nothing is downloaded at run time); run `hf download "
                        f"{model}` first, or give a local folder")
    return path


@contextlib.contextmanager
def loading(model: str, option: str) -> Iterator[None]:
    """What transformers' ``from_pretrained`` cannot read or fetch (``OSError``: a folder without the model's
    files, a failed download) as a ``UserError`` naming ``option``."""
    try:
        yield
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{option}={model}: cannot load the model: {first}") from e
