"""Engine layer: find and replace a classifier's final layer, whatever the family.

torchvision names its heads ``fc`` (ResNet, RegNet, GoogLeNet), ``classifier[-1]``
(VGG, MobileNet, EfficientNet, ConvNeXt), ``heads.head`` (ViT), ``head`` (Swin),
and SqueezeNet ends in a 1x1 convolution. Rather than a table, the head is the last
``Linear`` layer in module order, or the last 1x1 ``Conv2d`` when there is none.
"""

from __future__ import annotations

from torch import nn


def find_head_path(model: nn.Module) -> str:
    """Dotted path of the module that produces the class scores."""
    last_linear: str | None = None
    last_pointwise: str | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_linear = name
        elif isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
            last_pointwise = name
    head = last_linear or last_pointwise
    if head is None:
        raise ValueError(f"{type(model).__name__} has no Linear or 1x1 Conv2d layer to replace")
    return head


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, module)


def replace_head(model: nn.Module, head_path: str, num_classes: int) -> nn.Module:
    """Swap the head for a freshly initialised one with ``num_classes`` outputs."""
    old = model.get_submodule(head_path)
    new: nn.Module
    if isinstance(old, nn.Linear):
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    elif isinstance(old, nn.Conv2d):
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=1, bias=old.bias is not None)
    else:
        raise TypeError(f"cannot replace a head of type {type(old).__name__}")
    _set_submodule(model, head_path, new)
    if hasattr(model, "num_classes"):
        setattr(model, "num_classes", num_classes)  # noqa: B010 - not a declared attribute
    return new


def drop_auxiliary_heads(model: nn.Module) -> None:
    """GoogLeNet and Inception v3 carry ImageNet-only auxiliary classifiers; fine-tuning
    uses the main head alone, and without them forward() returns plain logits."""
    if getattr(model, "aux_logits", False):
        setattr(model, "aux_logits", False)  # noqa: B010 - not a declared attribute
        for name in ("aux1", "aux2", "AuxLogits"):
            if hasattr(model, name):
                setattr(model, name, None)
