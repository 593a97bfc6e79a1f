"""A tiny backbone with BatchNorm, registered like a real one, for fast engine tests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import nn

from finetune_studio.engine.backbones import BackboneSpec, register_backbone
from finetune_studio.engine.preprocessing import Preprocessing

if TYPE_CHECKING:
    from finetune_studio.engine.recipe import Recipe

TINY = "tiny_cnn"
TINY_PREPROCESSING = Preprocessing(36, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear")


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(3, 8),
            nn.MaxPool2d(2),
            _conv_block(8, 16),
            nn.MaxPool2d(2),
            _conv_block(16, 16),
            _conv_block(16, 24),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def pretrained_tiny_state() -> dict[str, torch.Tensor]:
    """Fixed "pretrained" weights, with non-trivial BatchNorm statistics."""
    torch.manual_seed(1234)
    model = TinyNet()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.state_dict()


def tiny_spec(name: str = TINY, build: type[TinyNet] = TinyNet, **fields: object) -> BackboneSpec:
    """A registry entry for the tiny network: bundled weights, or ``weights_url=...``."""
    weights = fields if "weights_url" in fields else {"bundled_weights": pretrained_tiny_state}
    return BackboneSpec(
        name=name,
        family="Tiny",
        build=build,
        preprocessing=TINY_PREPROCESSING,
        num_params=sum(p.numel() for p in TinyNet().parameters()),
        imagenet_top1=None,
        **weights,  # type: ignore[arg-type]
    )


def register_tiny() -> None:
    register_backbone(tiny_spec())


COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


def make_colour_dataset(
    root: Path,
    per_class: int = 12,
    size: int = 40,
    seed: int = 0,
    colours: dict[str, tuple[int, int, int]] | None = None,
) -> Path:
    """Noisy pictures whose dominant colour is the class: easy for any network."""
    rng = np.random.default_rng(seed)
    for name, rgb in (colours or COLOURS).items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.normal(0, 30, (size, size, 3))
            pixels = np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i:03d}.png")
    return root


def misfile(root: Path, moves: list[tuple[str, str]], index: int = 0) -> dict[str, str]:
    """Move picture ``index`` of each class ``real`` into class ``wrong`` (as a user
    would misfile it): {moved path: real class}."""
    moved: dict[str, str] = {}
    for real, wrong in moves:
        source = sorted((root / real).iterdir())[index]
        target = root / wrong / f"moved_{source.name}"
        source.rename(target)
        moved[str(target)] = real
    return moved


def tiny_recipe_for(dataset: Path, **changes: object) -> Recipe:
    """A quick, repeatable run of the tiny backbone on ``dataset``: on the CPU, no
    worker processes, no augmentation, the head trained by epochs; ``changes`` replace
    any of that."""
    from finetune_studio.engine.recipe import Recipe

    fields: dict[str, object] = {
        "backbone": TINY,
        "epochs": 2,
        "batch_size": 8,
        "workers": 0,
        "augmentation": "none",
        "lr": 0.01,
        "head_fit": "epochs",
        "device": "cpu",
    }
    return Recipe(dataset=str(dataset), **(fields | changes))  # type: ignore[arg-type]
