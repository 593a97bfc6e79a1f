"""Engine layer: which parameters train, stated as a plan that a recipe can carry.

A ``FreezePlan`` is a preset (``head``, ``last:N``, ``none``) followed by per-node
overrides applied in order, so whatever a user clicks in the tree is reproducible
from JSON. "Blocks" for ``last:N`` are found generically (see ``block_units``).

Policy, on purpose: frozen parts are held in eval mode (BatchNorm statistics and
affine fixed, no dropout or stochastic depth), re-applied after every
``model.train()``. With ``train_batchnorm`` every BN layer trains instead, except
where an override freezes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .errors import RecipeError

_LAST_N = re.compile(r"^last:(\d+)$")
_NORM_TYPES = (_BatchNorm, nn.LayerNorm, nn.GroupNorm)
MIN_BLOCKS = 4


@dataclass(frozen=True)
class FreezePlan:
    preset: str = "head"
    overrides: tuple[tuple[str, bool], ...] = ()

    def __post_init__(self) -> None:
        if self.preset not in ("head", "none") and not _LAST_N.match(self.preset):
            raise RecipeError(
                f"Unknown freeze preset {self.preset!r}: use head, last:N (e.g. last:2) or none."
            )

    def with_override(self, path: str, trainable: bool) -> FreezePlan:
        """Add an override; it supersedes earlier ones on the same node or below it."""
        kept = tuple(
            (p, t) for p, t in self.overrides if p != path and not p.startswith(path + ".")
        )
        return FreezePlan(self.preset, (*kept, (path, trainable)))

    def overridden_paths(self) -> frozenset[str]:
        """The nodes that carry a setting of their own (shown in bold in the tree)."""
        return frozenset(path for path, _ in self.overrides)

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "overrides": [[p, t] for p, t in self.overrides]}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | str) -> FreezePlan:
        if isinstance(data, str):
            return cls(data)
        overrides = tuple((str(p), bool(t)) for p, t in data.get("overrides", []))
        return cls(str(data.get("preset", "head")), overrides)


@dataclass(frozen=True)
class GradualUnfreeze:
    """Train only the head for ``head_epochs`` epochs, then switch to the full plan
    (plus ``paths``, unfrozen)."""

    head_epochs: int
    paths: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"head_epochs": self.head_epochs, "paths": list(self.paths)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GradualUnfreeze:
        return cls(int(data["head_epochs"]), tuple(str(p) for p in data.get("paths", [])))


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _join(parent: str, child: str) -> str:
    return f"{parent}.{child}" if parent else child


def block_units(model: nn.Module, head_path: str) -> list[tuple[str, ...]]:
    """The network's blocks, in order, each as the module paths it spans.

    The block container is the shallowest module (root, a child, a grandchild) with
    at least ``MIN_BLOCKS`` parameter-holding children other than the head: the stem
    and ``layer1..4`` in ResNet, ``features.N`` in EfficientNet and ConvNeXt,
    ``encoder.layers.*`` in ViT. Parameter-holding modules after it (VGG's hidden
    classifier layers) are blocks too. A normalisation layer alone joins the block
    before it.
    """
    head_chain = {head_path} | {
        head_path.rsplit(".", i)[0] for i in range(1, head_path.count(".") + 1)
    }

    def units_of(path: str, module: nn.Module) -> list[str]:
        return [
            _join(path, name)
            for name, child in module.named_children()
            if _join(path, name) not in head_chain and _has_parameters(child)
        ]

    def blocks_in(path: str, module: nn.Module) -> int:
        # A norm layer is not a block of its own (it joins the one before): timm's
        # EfficientNet has conv_stem, bn1, blocks, conv_head, bn2 at its root.
        return sum(
            not isinstance(model.get_submodule(unit), _NORM_TYPES)
            for unit in units_of(path, module)
        )

    depth0: list[tuple[str, nn.Module]] = [("", model)]
    depth1 = [(name, child) for name, child in model.named_children()]
    depth2 = [(_join(p, n), c) for p, m in depth1 for n, c in m.named_children()]
    container = ""
    for level in (depth0, depth1, depth2):
        path, module = max(level, key=lambda item: blocks_in(*item))  # first max wins
        if blocks_in(path, module) >= MIN_BLOCKS:
            container = path
            break
    paths = units_of(container, model.get_submodule(container))
    # Parameter-holding modules that run after the container, outside the head.
    trail_from = container
    while trail_from:
        parent, _, name = trail_from.rpartition(".")
        siblings = list(model.get_submodule(parent).named_children())
        after = [n for n, _ in siblings][[n for n, _ in siblings].index(name) + 1 :]
        for sibling in after:
            sibling_path = _join(parent, sibling)
            if sibling_path in head_chain and sibling_path != head_path:
                paths += units_of(sibling_path, model.get_submodule(sibling_path))
            elif sibling_path not in head_chain and _has_parameters(
                model.get_submodule(sibling_path)
            ):
                paths.append(sibling_path)
        trail_from = parent
    units: list[list[str]] = []
    for path in paths:
        if units and isinstance(model.get_submodule(path), _NORM_TYPES):
            units[-1].append(path)
        else:
            units.append([path])
    return [tuple(unit) for unit in units]


def set_trainable(model: nn.Module, path: str, trainable: bool) -> None:
    try:
        target = model.get_submodule(path) if path else model
        parameters = list(target.parameters())
    except AttributeError:
        try:
            parameters = [model.get_parameter(path)]
        except AttributeError:
            raise RecipeError(f"The model has no module or parameter named {path!r}.") from None
    for parameter in parameters:
        parameter.requires_grad_(trainable)


def apply_preset(model: nn.Module, head_path: str, preset: str) -> None:
    if preset == "none":
        set_trainable(model, "", True)
        return
    set_trainable(model, "", False)
    set_trainable(model, head_path, True)
    match = _LAST_N.match(preset)
    if match:
        units = block_units(model, head_path)
        for unit in units[max(len(units) - int(match.group(1)), 0) :]:
            for path in unit:
                set_trainable(model, path, True)


def apply_freeze_plan(
    model: nn.Module, head_path: str, plan: FreezePlan, train_batchnorm: bool = False
) -> None:
    """Set ``requires_grad`` on every parameter according to the plan.

    ``train_batchnorm`` is a default like the preset, so it comes before the
    overrides: a choice the user made on a node (a BatchNorm row unticked, or a
    frozen block holding BatchNorm layers) always wins.
    """
    apply_preset(model, head_path, plan.preset)
    if train_batchnorm:
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.requires_grad_(True)
    for path, trainable in plan.overrides:
        set_trainable(model, path, trainable)


def hold_frozen_modules(model: nn.Module) -> int:
    """Put every frozen part in eval mode; call after ``model.train()``.

    A module whose parameters are all frozen is a fixed function: its BatchNorm
    statistics must not move, and its dropout and stochastic depth must not fire
    (torchvision's EfficientNet and ConvNeXt drop whole residual branches at random
    in train mode). Returns how many subtrees were held, for the log.
    """
    held = 0
    pending = [model]
    while pending:
        module = pending.pop()
        parameters = list(module.parameters())
        if parameters and not any(p.requires_grad for p in parameters):
            module.eval()
            held += 1
        else:
            pending.extend(module.children())
    return held
