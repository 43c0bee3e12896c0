"""Specification of ``ModelRegistry`` (``streams/models.py``): served names and aliases
(fnmatch patterns, tried in order, a served name first)."""

from __future__ import annotations

import pytest

from streams.errors import InvalidRequestError
from streams.models import ModelRegistry
from tests.support import ScriptedModel


@pytest.fixture
def registry() -> ModelRegistry:
    models = ModelRegistry()
    for name in ("fast", "smart", "claude-opus-5-5"):
        models.register(ScriptedModel(name))
    models.alias("claude-haiku-*", "fast")
    models.alias("claude-*", "smart")
    return models


@pytest.mark.parametrize(
    ("name", "served"),
    [
        pytest.param("fast", "fast", id="served-name"),
        pytest.param("claude-opus-5-5", "claude-opus-5-5", id="served-name-before-aliases"),
        pytest.param("claude-haiku-4-5", "fast", id="first-matching-alias"),
        pytest.param("claude-sonnet-4-5", "smart", id="later-alias"),
    ],
)
def test_resolve(registry: ModelRegistry, name: str, served: str) -> None:
    assert registry.resolve(name) == served
    assert registry.get(name).name == served
    assert name in registry


def test_an_unknown_name_is_not_served(registry: ModelRegistry) -> None:
    assert "gpt-5" not in registry
    with pytest.raises(InvalidRequestError, match="unknown model 'gpt-5'"):
        registry.get("gpt-5")


def test_patterns_are_case_sensitive(registry: ModelRegistry) -> None:
    assert "CLAUDE-X" not in registry


def test_an_alias_of_a_model_not_served_is_refused_naming_the_served_ones() -> None:
    models = ModelRegistry()
    models.register(ScriptedModel("fast"))
    with pytest.raises(ValueError, match=r"'gone' is not a served model \(known: fast\)"):
        models.alias("claude-*", "gone")
