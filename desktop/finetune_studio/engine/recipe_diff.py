"""Engine layer: two recipes compared field by field, and a recipe's plan in words.

The Runs view shows what changed between two kept runs; it gets plain strings from
here and does no formatting of its own. Nested fields are spelled out one leaf at a
time (``freeze.preset``, ``lr_multipliers.features.6``) so a difference names exactly
what changed, not just "freeze".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .recipe import Recipe


@dataclass(frozen=True)
class RecipeDifference:
    """One field whose value differs; ``first``/``second`` are the values in words,
    "—" where a recipe does not set it (no gradual unfreezing, no multiplier)."""

    field: str
    first: str
    second: str


ABSENT = "—"


def recipe_diff(first: Recipe, second: Recipe) -> list[RecipeDifference]:
    """The fields whose values differ, in the recipe's own field order."""
    left, right = flat_fields(first), flat_fields(second)
    order = [f.name for f in dataclasses.fields(Recipe)]
    names = sorted(
        dict.fromkeys([*left, *right]),  # each name once, in order of appearance
        key=lambda name: order.index(name.split(".", 1)[0]),  # a stable sort
    )
    return [
        RecipeDifference(name, left.get(name, ABSENT), right.get(name, ABSENT))
        for name in names
        if left.get(name, ABSENT) != right.get(name, ABSENT)
    ]


def flat_fields(recipe: Recipe) -> dict[str, str]:
    """Every leaf field of the recipe, by dotted name, its value in words."""
    data = recipe.to_dict()
    data.pop("version", None)
    flat: dict[str, str] = {}
    _flatten("", data, flat)
    return flat


def _flatten(prefix: str, value: Any, into: dict[str, str]) -> None:
    """Mappings and the freeze overrides become one leaf per key or layer; an empty
    one, or an unset section (``gradual_unfreeze``), adds nothing."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, into)
    elif prefix == "freeze.overrides":
        for path, trainable in value:
            into[f"{prefix}.{path}"] = "trainable" if trainable else "frozen"
    elif value is None:
        if prefix in NONE_IN_WORDS:
            into[prefix] = NONE_IN_WORDS[prefix]
    else:
        into[prefix] = _in_words(value)


NONE_IN_WORDS = {"workers": "automatic"}
"""Fields where None is a value of its own; elsewhere it means "not set"."""


def _in_words(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)


def freeze_in_words(recipe: Recipe) -> str:
    """What a run trained, short enough for a table cell: "head only", "last 2
    blocks", "everything", plus layer overrides and gradual unfreezing."""
    preset = recipe.freeze.preset
    if preset == "head":
        words = "head only"
    elif preset == "none":
        words = "everything"
    else:
        blocks = int(preset.split(":", 1)[1])
        words = f"last {blocks} block{'' if blocks == 1 else 's'} + head"
    overrides = len(recipe.freeze.overrides)
    if overrides:
        words += f", {overrides} layer setting{'' if overrides == 1 else 's'}"
    if recipe.gradual_unfreeze is not None:
        words += f", head first ({recipe.gradual_unfreeze.head_epochs} ep.)"
    return words
