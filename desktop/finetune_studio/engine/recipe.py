"""Engine layer: a recipe is one JSON-serialisable description of a training run.

The CLI and the window both build a ``Recipe`` and hand it to the trainer, so a
recipe saved from either and loaded again runs the same way.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_file_atomically
from .backbones import DEFAULT_BACKBONE
from .errors import RecipeError
from .freezing import FreezePlan, GradualUnfreeze
from .optim import OPTIMIZERS, SCHEDULES
from .preprocessing import AUGMENTATION_PRESETS

RECIPE_VERSION = 1
DEVICES = ("auto", "cpu", "cuda", "mps")
HEAD_FITS = ("optimum", "epochs")
"""How a head alone trains on cached features: solved to its optimum (``head_fit``),
or by epochs of the optimizer like any other layer."""


@dataclass(frozen=True)
class Recipe:
    dataset: str
    backbone: str = DEFAULT_BACKBONE
    weights: str = "default"  # "default", "none", or a weights file path
    freeze: FreezePlan = field(default_factory=FreezePlan)
    lr_multipliers: dict[str, float] = field(default_factory=dict)
    gradual_unfreeze: GradualUnfreeze | None = None
    train_batchnorm: bool = False
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    class_balanced: bool = False
    augmentation: str = "light"
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    mixed_precision: bool = True
    early_stopping_patience: int = 0  # 0: off
    workers: int | None = None  # DataLoader workers; None picks for the machine
    feature_cache: bool = True  # head-only runs train on features computed once
    cached_views: int = 1  # pictures' views cached per image: 1 plain + augmented ones
    head_fit: str = "optimum"  # see HEAD_FITS

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise RecipeError(message)

        require(bool(self.dataset), "The recipe names no dataset folder.")
        require(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}.")
        require(self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}.")
        require(self.lr > 0, f"learning rate must be positive, got {self.lr}.")
        require(self.weight_decay >= 0, "weight decay must not be negative.")
        require(0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1).")
        require(0 <= self.warmup_fraction < 1, "warm-up fraction must be in [0, 1).")
        require(0 <= self.val_fraction < 1, "validation fraction must be in [0, 1).")
        require(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}.")
        require(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}.")
        require(
            self.augmentation in AUGMENTATION_PRESETS,
            f"augmentation must be one of {AUGMENTATION_PRESETS}.",
        )
        require(self.device in DEVICES, f"device must be one of {DEVICES}.")
        require(self.head_fit in HEAD_FITS, f"head_fit must be one of {HEAD_FITS}.")
        require(self.early_stopping_patience >= 0, "patience must not be negative.")
        require(self.workers is None or self.workers >= 0, "workers must not be negative.")
        require(
            1 <= self.cached_views <= 64,
            "cached_views (1 + augmented copies) must be between 1 and 64.",
        )
        require(
            all(m >= 0 for m in self.lr_multipliers.values()),
            "learning-rate multipliers must not be negative.",
        )
        if self.gradual_unfreeze is not None:
            require(
                0 < self.gradual_unfreeze.head_epochs < self.epochs,
                "gradual unfreezing needs 0 < head epochs < epochs.",
            )

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["freeze"] = self.freeze.to_dict()
        data["lr_multipliers"] = dict(self.lr_multipliers)
        data["gradual_unfreeze"] = (
            self.gradual_unfreeze.to_dict() if self.gradual_unfreeze else None
        )
        return {"version": RECIPE_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        data = dict(data)
        version = data.pop("version", RECIPE_VERSION)
        if version != RECIPE_VERSION:
            raise RecipeError(f"Recipe version {version} is not supported by this version.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecipeError(f"Unknown recipe fields: {', '.join(unknown)}.")
        if "freeze" in data:
            data["freeze"] = FreezePlan.from_dict(data["freeze"])
        if data.get("gradual_unfreeze") is not None:
            data["gradual_unfreeze"] = GradualUnfreeze.from_dict(data["gradual_unfreeze"])
        if "lr_multipliers" in data:
            data["lr_multipliers"] = {str(k): float(v) for k, v in data["lr_multipliers"].items()}
        try:
            return cls(**data)
        except TypeError as exc:
            raise RecipeError(f"Invalid recipe: {exc}.") from exc

    def save(self, path: str | Path) -> None:
        """Write atomically: a failure keeps the project file as it was."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        write_file_atomically(
            Path(path).expanduser().absolute(),
            lambda temporary: temporary.write_text(text, encoding="utf-8"),
        )

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RecipeError(f"The recipe file {path} does not exist.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RecipeError(f"The recipe file {path} is not valid JSON ({exc}).") from exc
        if not isinstance(data, dict):
            raise RecipeError(f"The recipe file {path} does not hold a JSON object.")
        return cls.from_dict(data)
