"""Imports run one way: the core (tokens, the head contract, the tokenizer, the losses) knows neither heads nor data;
heads and datamodules know the core only (and not each other); the module and the commands sit on top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trajtok", "heads", "datamodules")
#: The top layer: the LightningModule, its callbacks, and the commands built on them.
TOP = {"trajtok.module", "trajtok.callbacks", "trajtok.seeding", "trajtok.batches", "trajtok.cli",
       "trajtok.conversion", "trajtok.visualize", "trajtok.export", "trajtok.writers", "trajtok.pseudo_labels"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every project module ``path`` imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def layer(name: str) -> str:
    package = name.split(".")[0]
    if package != "trajtok":
        return package
    return "top" if any(name == t or name.startswith(t + ".") for t in TOP) else "core"


#: Which layers each layer may import.
ALLOWED = {"core": {"core"}, "heads": {"core", "heads"}, "datamodules": {"core", "datamodules"},
           "top": {"core", "heads", "datamodules", "top"}}
FILES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path):
    mine = layer(module_name(path))
    wrong = sorted(n for n in imported(path) if layer(n) not in ALLOWED[mine])
    assert not wrong, f"{module_name(path)} ({mine}) imports {wrong}"


def test_the_layers_are_what_the_rule_says():
    assert layer("trajtok.tokenizer.trajtok") == layer("trajtok.head") == layer("trajtok.tokens") == "core"
    assert layer("trajtok.module") == layer("trajtok.cli") == layer("trajtok.seeding") == "top"
    assert layer("heads.clip") == "heads" and layer("datamodules.video") == "datamodules"
    assert imported(ROOT / "trajtok" / "module.py") >= {"trajtok.head", "trajtok.seeding"}


def test_the_module_knows_the_head_contract_not_the_heads():
    """Any head, the project's or a user's, plugs into the module through ``trajtok.head.Head`` alone."""
    wrong = sorted(n for n in imported(ROOT / "trajtok" / "module.py") if layer(n) in ("heads", "datamodules"))
    assert not wrong, f"trajtok.module imports {wrong}"
