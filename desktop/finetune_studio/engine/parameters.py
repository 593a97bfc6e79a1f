"""Engine layer: the network as a tree of named modules and parameters.

The tree mirrors ``model.named_modules()``: every module is a node, every direct
parameter a leaf under it. Trainability lives in exactly one place, each
parameter's ``requires_grad``; a node's state (trainable / frozen / partial) is
derived from its leaves, never stored. The window's tree view is a thin adapter
over this class.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importable without torch, so the window can show before torch loads
    from torch import nn


class TrainState(Enum):
    TRAINABLE = "trainable"
    FROZEN = "frozen"
    PARTIAL = "partial"
    EMPTY = "empty"  # a module with no parameters at all


@dataclass(eq=False)
class ParameterNode:
    """A module (``parameter is None``) or one of its direct parameters."""

    path: str
    name: str
    type_name: str
    parameter: nn.Parameter | None = None
    parent: ParameterNode | None = None
    children: list[ParameterNode] = field(default_factory=list)
    total: int = 0

    @property
    def is_parameter(self) -> bool:
        return self.parameter is not None

    @property
    def shape(self) -> tuple[int, ...] | None:
        return tuple(self.parameter.shape) if self.parameter is not None else None

    def leaves(self) -> Iterator[nn.Parameter]:
        if self.parameter is not None:
            yield self.parameter
        for child in self.children:
            yield from child.leaves()

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.leaves() if p.requires_grad)

    def state(self) -> TrainState:
        flags = {p.requires_grad for p in self.leaves()}
        if not flags:
            return TrainState.EMPTY
        if flags == {True}:
            return TrainState.TRAINABLE
        if flags == {False}:
            return TrainState.FROZEN
        return TrainState.PARTIAL

    def set_trainable(self, trainable: bool) -> None:
        for parameter in self.leaves():
            parameter.requires_grad_(trainable)

    def direct_parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {c.name: c.shape for c in self.children if c.shape is not None}

    def ancestors(self) -> Iterator[ParameterNode]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


@dataclass(frozen=True)
class TrainableSummary:
    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return (
            f"Trainable: {self.trainable:,} of {human_count(self.total)} parameters "
            f"({self.fraction:.2%})"
        )


def multiplier_origin(path: str, multipliers: Mapping[str, float]) -> str | None:
    """The node whose learning-rate multiplier applies to ``path``: ``path`` itself or
    its nearest ancestor that has one (``""`` is the whole model); None when none has.

    Nearest wins, whatever order the settings were made in: a multiplier set on a
    block keeps applying to the layers inside it that have their own.
    """
    parts = path.split(".") if path else []
    for depth in range(len(parts), -1, -1):
        prefix = ".".join(parts[:depth])
        if prefix in multipliers:
            return prefix
    return None


def multiplier_for(path: str, multipliers: Mapping[str, float]) -> float:
    """The learning-rate multiplier in effect for ``path`` (see ``multiplier_origin``), else 1."""
    origin = multiplier_origin(path, multipliers)
    return 1.0 if origin is None else float(multipliers[origin])


def with_multiplier(
    multipliers: Mapping[str, float], path: str, multiplier: float | None
) -> dict[str, float]:
    """``multipliers`` with ``path``'s own setting replaced (None removes it, so the
    node inherits again). Settings on other nodes, above or below, are kept: each
    still applies to its own subtree."""
    changed = {p: m for p, m in multipliers.items() if p != path}
    if multiplier is not None:
        changed[path] = float(multiplier)
    return changed


def human_count(n: int) -> str:
    """3,400,000 -> '3.4M'; small counts stay exact."""
    for limit, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (10_000, "k")):
        if n >= limit:
            return f"{n / limit:.1f}{suffix}"
    return f"{n:,}"


class ParameterTree:
    """Named modules and parameters of a model, addressable by dotted path."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._by_path: dict[str, ParameterNode] = {}
        self.root = self._build("", "", model, None)

    def _build(
        self, path: str, name: str, module: nn.Module, parent: ParameterNode | None
    ) -> ParameterNode:
        node = ParameterNode(
            path, name or type(module).__name__, type(module).__name__, parent=parent
        )
        self._by_path[path] = node
        for param_name, parameter in module.named_parameters(recurse=False):
            leaf_path = f"{path}.{param_name}" if path else param_name
            leaf = ParameterNode(
                leaf_path, param_name, "Parameter", parameter, node, total=parameter.numel()
            )
            self._by_path[leaf_path] = leaf
            node.children.append(leaf)
        for child_name, child in module.named_children():
            child_path = f"{path}.{child_name}" if path else child_name
            node.children.append(self._build(child_path, child_name, child, node))
        node.total = sum(c.total for c in node.children)
        return node

    def __getitem__(self, path: str) -> ParameterNode:
        try:
            return self._by_path[path]
        except KeyError:
            raise KeyError(f"no module or parameter named {path!r} in this model") from None

    def __contains__(self, path: str) -> bool:
        return path in self._by_path

    def nodes(self) -> Iterator[ParameterNode]:
        return iter(self._by_path.values())

    def set_trainable(self, path: str, trainable: bool) -> None:
        self[path].set_trainable(trainable)

    def summary(self) -> TrainableSummary:
        return TrainableSummary(self.root.trainable_count(), self.root.total)
