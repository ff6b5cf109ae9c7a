"""Fixtures shared by the test modules. Helpers they import (paths, ``run_trajtok``) are in ``support/helpers.py``; the
markers (``slow``, ``distributed``, ``subprocess``) are declared in pyproject.toml."""

from __future__ import annotations

from pathlib import Path

import pytest


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
