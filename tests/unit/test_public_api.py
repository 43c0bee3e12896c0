"""Every module of ``gateway`` and ``streams`` declares its public API in ``__all__`` (as
anyio's ``tests/test_all_attributes.py`` holds it), and no module imports another's private
names: what crosses a module boundary is in the other module's ``__all__``."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import gateway
import streams

ROOT = Path(__file__).resolve().parents[2]


def _modules() -> list[str]:
    names: list[str] = []
    for package in (gateway, streams):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            names.append(info.name)
    return sorted(names)


MODULES = _modules()


def _source(module_name: str) -> Path:
    path = Path(importlib.import_module(module_name).__file__ or "")
    return path


def _project_imports() -> list[tuple[str, str, str]]:
    """(importing file, module imported from, name) for every ``from x import y`` of a
    project module in gateway/, streams/, tests/ and bench/."""
    found = []
    for folder in ("gateway", "streams", "tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.ImportFrom)
                    and node.level == 0
                    and node.module
                    and node.module.split(".")[0] in ("gateway", "streams")
                ):
                    for alias in node.names:
                        found.append((str(path.relative_to(ROOT)), node.module, alias.name))
    return found


@pytest.mark.parametrize("module_name", MODULES)
def test_every_module_declares_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert isinstance(getattr(module, "__all__", None), list), f"{module_name} has no __all__"


@pytest.mark.parametrize("module_name", MODULES)
def test_every_name_in_all_exists_once(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = module.__all__
    assert len(names) == len(set(names))
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names what it does not have: {missing}"


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_class_and_function_is_in_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    defined_here = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module_name
    ]
    left_out = sorted(set(defined_here) - set(module.__all__))
    assert not left_out, f"{module_name} defines public {left_out} outside __all__"


def test_no_private_name_is_imported_across_modules() -> None:
    private = [
        f"{where}: from {module} import {name}"
        for where, module, name in _project_imports()
        if name.startswith("_")
    ]
    assert not private


def test_what_crosses_a_module_boundary_is_in_its_all() -> None:
    outside = []
    for where, module_name, name in _project_imports():
        module = importlib.import_module(module_name)
        if inspect.ismodule(getattr(module, name, None)):
            continue  # ``from package import submodule``
        if name not in getattr(module, "__all__", ()):
            outside.append(f"{where}: from {module_name} import {name}")
    assert not outside
