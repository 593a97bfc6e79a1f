"""Engine layer: how a backbone wants its pictures, and the transforms that do it.

Numbers here always come from the weights (torchvision's ``weights.transforms()``
or the bundled backbone's spec), never from constants sprinkled through the code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

AugmentationPreset = Literal["none", "light", "standard"]
AUGMENTATION_PRESETS: tuple[str, ...] = ("none", "light", "standard")


@dataclass(frozen=True)
class Preprocessing:
    resize_size: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    @classmethod
    def from_torchvision(cls, transforms: Any) -> Preprocessing:
        """Read the numbers off a torchvision ``ImageClassification`` preset."""
        resize = transforms.resize_size
        crop = transforms.crop_size
        return cls(
            resize_size=int(resize[0] if isinstance(resize, (list, tuple)) else resize),
            crop_size=int(crop[0] if isinstance(crop, (list, tuple)) else crop),
            mean=tuple(float(m) for m in transforms.mean),  # type: ignore[arg-type]
            std=tuple(float(s) for s in transforms.std),  # type: ignore[arg-type]
            interpolation=transforms.interpolation.value,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            resize_size=int(data["resize_size"]),
            crop_size=int(data["crop_size"]),
            mean=tuple(float(m) for m in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(s) for s in data["std"]),  # type: ignore[arg-type]
            interpolation=str(data.get("interpolation", "bilinear")),
        )

    @property
    def interpolation_mode(self) -> InterpolationMode:
        return InterpolationMode(self.interpolation)


def _to_normalized_tensor(pre: Preprocessing) -> list[T.Transform]:
    return [
        T.ToImage(),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(list(pre.mean), list(pre.std)),
    ]


def eval_transform(pre: Preprocessing) -> T.Compose:
    """Resize the short side, centre-crop, normalise: what the weights were evaluated with."""
    return T.Compose(
        [
            T.Resize(pre.resize_size, interpolation=pre.interpolation_mode, antialias=True),
            T.CenterCrop(pre.crop_size),
            *_to_normalized_tensor(pre),
        ]
    )


def train_transform(pre: Preprocessing, preset: str) -> T.Compose:
    """Augmentation for training pictures; ``none`` is exactly the evaluation transform."""
    if preset == "none":
        return eval_transform(pre)
    if preset == "light":
        steps: list[T.Transform] = [
            T.Resize(pre.resize_size, interpolation=pre.interpolation_mode, antialias=True),
            T.RandomCrop(pre.crop_size),
            T.RandomHorizontalFlip(),
        ]
    elif preset == "standard":
        steps = [
            T.RandomResizedCrop(
                pre.crop_size,
                scale=(0.35, 1.0),
                interpolation=pre.interpolation_mode,
                antialias=True,
            ),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25),
        ]
    else:
        raise ValueError(
            f"unknown augmentation preset {preset!r}; use one of {AUGMENTATION_PRESETS}"
        )
    return T.Compose([*steps, *_to_normalized_tensor(pre)])
