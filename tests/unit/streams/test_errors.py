"""The one error tree (``streams/errors.py``): every :class:`GatewayError` defined in
``gateway/`` or ``streams/`` is defined there and drawn in its docstring, where it is."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import gateway
import streams
from streams import errors
from streams.errors import GatewayError

# One line of the drawing: its indent (4 columns a level) and a class name.
_TREE_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w*Error)$")


def drawn_tree() -> dict[str, str | None]:
    """Each class the docstring draws → the class drawn as its parent (``None``: the root)."""
    assert errors.__doc__ is not None
    parents: dict[str, str | None] = {}
    path: list[str] = []
    for line in errors.__doc__.splitlines():
        match = _TREE_LINE.match(line.removeprefix("    "))
        if match is None:
            continue
        depth = len(match["indent"]) // 4
        del path[depth:]
        parents[match["name"]] = path[-1] if path else None
        path.append(match["name"])
    return parents


def defined_gateway_errors() -> set[type[GatewayError]]:
    """Every GatewayError subclass defined in a module of ``gateway`` or ``streams``."""
    found: set[type[GatewayError]] = set()
    for package in (gateway, streams):
        for module_info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module_info.name.endswith(".__main__"):
                continue
            module = importlib.import_module(module_info.name)
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, GatewayError) and value.__module__ == module.__name__:
                    found.add(value)
    found.add(GatewayError)
    return found


def test_every_gateway_error_is_defined_in_streams_errors() -> None:
    elsewhere = {
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in defined_gateway_errors()
        if cls.__module__ != "streams.errors"
    }
    assert elsewhere == set()


def test_every_gateway_error_is_drawn_in_the_tree() -> None:
    assert {cls.__name__ for cls in defined_gateway_errors()} == set(drawn_tree())


def test_the_tree_draws_each_error_under_its_base_class() -> None:
    for name, parent in drawn_tree().items():
        cls = getattr(errors, name)
        base = cls.__bases__[0]
        assert (None if base is Exception else base.__name__) == parent, name


def test_every_error_has_a_code_of_its_own() -> None:
    codes = [cls.code for cls in defined_gateway_errors()]
    assert len(codes) == len(set(codes))
