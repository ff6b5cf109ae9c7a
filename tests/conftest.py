"""Fixtures shared by the test modules, and the skip of tests whose shared data is missing. Helpers they import
(paths, ``run_trajtok``, the tiny-model builders) are in ``support/``; the markers (``slow``, ``distributed``,
``subprocess``, ``shared_data``) are declared in pyproject.toml."""

from __future__ import annotations

import functools
from pathlib import Path

import builders
import pytest
from helpers import SHARED


def pytest_collection_modifyitems(config, items) -> None:
    """A test marked ``shared_data("data/msrvtt24")`` is skipped, with the missing folder named, unless
    ``../shared/data/msrvtt24`` is beside the checkout."""
    for item in items:
        for mark in item.iter_markers("shared_data"):
            needed = SHARED / mark.args[0]
            if needed.exists():
                continue
            if SHARED.is_dir():
                reason = f"needs {needed}, which is missing from {SHARED} (../shared beside the checkout)"
            else:
                reason = (f"needs {needed}: the folder {SHARED} is missing (../shared beside the checkout, not part of "
                          "the repository)")
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    """The synthetic data cache of the whole session (``cache_dir=`` or ``TRAJTOK_CACHE``). Each set lives in a
    folder named by its configuration and is written once, atomically, so tests share only identical sets."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def cli_in_tmp(tmp_path, monkeypatch) -> Path:
    """For ``TrajTokCLI`` in this process: runs write under the test's folder, and pytest's own command line is not
    taken for the CLI's."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["trajtok"])
    return tmp_path


# Factory fixtures of the builders in support/builders.py (which module-level helpers import directly).


@pytest.fixture
def tiny_tokenizer():
    """``tiny_tokenizer(**overrides)``: a TrajTok of dim 32, 8 slots, on a two-stage ConvPyramid."""
    return builders.tiny_tokenizer


@pytest.fixture
def tiny_module():
    """``tiny_module(tokenizer=None, head=None, **module_args)``: the tiny tokenizer under a tiny ClipHead."""
    return builders.tiny_module


@pytest.fixture
def quiet_trainer(tmp_path):
    """``quiet_trainer(**overrides)``: a CPU ``L.Trainer`` without logger, checkpoints, progress bar or model summary,
    whose folder is the test's ``tmp_path``."""
    return functools.partial(builders.quiet_trainer, tmp_path)
