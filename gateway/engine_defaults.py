"""Each default is written once, where the engine declares it: a setting that configures an
engine field takes its default from that field (``Field(engine_default(RunLimits,
"tool_timeout"), gt=0)``), so the two cannot drift apart.

The engine owns them, not the settings: ``streams`` runs without ``gateway`` (tests, other
hosts build ``RunLimits()`` or ``Route(...)`` directly) and may not import it, so its
dataclasses need their defaults anyway; the settings are the layer above and can read them.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

__all__ = ["engine_default"]


def engine_default(owner: type[Any] | Any, name: str) -> Any:
    """The default of ``owner``'s ``name``: a dataclass field's default, or else a keyword
    parameter's default in ``owner``'s signature. ``LookupError`` if it has none (a field
    made by a factory has no one value to mirror)."""
    if dataclasses.is_dataclass(owner) and isinstance(owner, type):
        for field in dataclasses.fields(owner):
            if field.name == name:
                if field.default is dataclasses.MISSING:
                    raise LookupError(f"{owner.__qualname__}.{name} has no plain default")
                return field.default
        raise LookupError(f"{owner.__qualname__} has no field {name!r}")
    parameter = inspect.signature(owner).parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        raise LookupError(f"{owner.__qualname__} has no default for {name!r}")
    return parameter.default
