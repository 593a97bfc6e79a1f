"""Engine layer: class-activation heatmaps (Grad-CAM), the "why the model decided" view.

Grad-CAM weights the channels of a layer's activations by the mean gradient of one
class's score over the positions, sums them and keeps the positive part: the places
where the picture pushes that class's score up. It is written here with hooks because
the libraries that offer it (grad-cam, torchcam) pull in opencv and matplotlib for
what is about a hundred lines, and the window draws its own overlay.

The layer is found without a per-family table. Candidates are the module paths of
``block_units`` (the blocks that ``last:N`` freezes by), in order; the heatmap comes
from the last candidate whose output is a grid of positions and whose positions the
class score depends on. A grid is ``(B, C, H, W)`` (CNNs), ``(B, H, W, C)`` (Swin's
channels-last stages) or ``(B, T + H*W, C)`` tokens (ViT, ``T`` leading class tokens
dropped). The dependence test matters for ViT: its head reads the class token only,
so the last encoder block's patch tokens get no gradient at all, and the block
before it is used (its patch tokens feed the last block's attention).

Threads: the window may run predictions with the same model in another thread
meanwhile. The hooks keep the activations of the calling thread only; the model's
parameters, buffers and ``requires_grad`` flags are never changed (the gradient
flows from the picture, which is made to require it), modules in training mode are
switched to eval for the one forward pass and switched back, and every hook is
removed before returning. Calling this while another thread *trains* the model is
not supported: that thread would see eval mode during the forward pass.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import UserFacingError
from ..freezing import block_units
from ..images import ImageProblem, load_for_model
from ..preprocessing import Preprocessing, eval_transform

MAX_EXTRA_TOKENS = 8
"""Leading tokens that are not positions: ViT's class token, a distillation token,
register tokens."""

PROBE_SEED = 0


class HeatmapError(UserFacingError):
    """No layer of the network keeps a grid of positions a heatmap could show."""


@dataclass(frozen=True)
class Explanation:
    """One picture explained; plain arrays, so it can cross to the window's thread."""

    picture: np.ndarray  # H x W x 3 uint8, resized and centre-cropped as the model saw it
    maps: dict[int, np.ndarray]  # class index -> H x W float32 in [0, 1]
    probabilities: tuple[float, ...]
    layer: str  # the module path whose activations were used


@dataclass(frozen=True)
class _Grid:
    """Where a layer's output keeps its positions."""

    layout: Literal["channels_first", "channels_last", "tokens"]
    height: int
    width: int
    extra_tokens: int = 0  # leading tokens that are not positions (ViT's class token)

    def of_first(self, value: Tensor) -> Tensor:
        """The first picture's activations (or gradients) as (C, height, width)."""
        item = value[0]
        if self.layout == "tokens":
            item = item[self.extra_tokens :].transpose(0, 1)
            return item.reshape(-1, self.height, self.width)
        return item.permute(2, 0, 1) if self.layout == "channels_last" else item


def _grid_of(shape: Sequence[int], picture_size: tuple[int, int]) -> _Grid | None:
    """The grid in an output of ``shape``, or None when it has no positions.

    A 4-D output is channels-last when its middle dimensions match the picture's
    aspect ratio better than its last two do (Swin's ``(B, 7, 7, 768)`` against a
    CNN's ``(B, 768, 7, 7)``). Tokens are taken as a square grid, since the
    preprocessing's centre crop is square.
    """
    if len(shape) == 3:
        side = math.isqrt(shape[1])
        extra = shape[1] - side * side
        if side > 1 and extra <= MAX_EXTRA_TOKENS:
            return _Grid("tokens", side, side, extra)
        return None
    if len(shape) != 4:
        return None
    aspect = math.log(picture_size[0] / picture_size[1])

    def mismatch(height: int, width: int) -> float:
        return abs(math.log(height / width) - aspect) if height and width else math.inf

    if mismatch(shape[1], shape[2]) < mismatch(shape[2], shape[3]):
        grid = _Grid("channels_last", shape[1], shape[2])
    else:
        grid = _Grid("channels_first", shape[2], shape[3])
    return grid if grid.height * grid.width > 1 else None


def candidate_layers(model: nn.Module, head_path: str) -> list[str]:
    """The module paths of every block, in order: where a heatmap may come from."""
    return [path for unit in block_units(model, head_path) for path in unit]


@contextmanager
def _recording(model: nn.Module, paths: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Forward hooks keeping each path's latest output, from the calling thread only."""
    owner = threading.get_ident()
    recorded: dict[str, Tensor] = {}

    def keeper(path: str) -> Callable[[nn.Module, object, object], None]:
        def hook(_: nn.Module, __: object, output: object) -> None:
            if threading.get_ident() == owner and isinstance(output, Tensor):
                recorded[path] = output

        return hook

    handles = []
    try:
        for path in paths:
            handles.append(model.get_submodule(path).register_forward_hook(keeper(path)))
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode for the forward pass; each module switched gets its own flag back
    (frozen parts are held in eval inside a training model, see ``freezing``)."""
    switched = [module for module in model.modules() if module.training]
    for module in switched:
        module.training = False
    try:
        yield
    finally:
        for module in switched:
            module.training = True


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _logits(output: object) -> Tensor:
    """Class scores from a forward pass (a tensor, or first in a tuple)."""
    if isinstance(output, tuple) and output:
        output = output[0]
    if not isinstance(output, Tensor) or output.dim() != 2:
        raise HeatmapError("The network does not return one row of class scores per picture.")
    return output


def _gradient(score: Tensor, value: Tensor) -> Tensor:
    """d score / d value; zeros where the score does not depend on ``value``."""
    gradient = None
    if value.requires_grad:
        (gradient,) = torch.autograd.grad(score, value, retain_graph=True, allow_unused=True)
    return torch.zeros_like(value) if gradient is None else gradient


def _choose(
    recorded: dict[str, Tensor], paths: Sequence[str], score: Tensor, size: tuple[int, int]
) -> tuple[str, _Grid, Tensor]:
    """The last layer with a grid whose positions ``score`` depends on, and that
    gradient; without one, the last layer with a grid (its map will be blank)."""
    fallback: tuple[str, _Grid, Tensor] | None = None
    for path in reversed(paths):
        value = recorded.get(path)
        grid = _grid_of(value.shape, size) if value is not None else None
        if value is None or grid is None:
            continue
        gradient = _gradient(score, value)
        if bool(grid.of_first(gradient).any()):
            return path, grid, gradient
        fallback = fallback or (path, grid, gradient)
    if fallback is None:
        raise HeatmapError(
            "No layer of this network keeps a grid of picture positions, so no heatmap "
            "can be drawn for it."
        )
    return fallback


def _cam(activation: Tensor, gradient: Tensor, size: tuple[int, int]) -> np.ndarray:
    """Grad-CAM on (C, h, w): ReLU of the gradient-weighted channel sum, resized to
    ``size`` and scaled so its peak is 1 (an all-zero map stays zero)."""
    weights = gradient.float().mean(dim=(1, 2))
    cam = torch.relu(torch.einsum("c,chw->hw", weights, activation.float()))
    cam = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    peak = float(cam.max())
    if peak > 0:
        cam = cam / peak
    return cam.clamp_(0.0, 1.0).cpu().numpy().astype(np.float32)


@dataclass(frozen=True)
class _Result:
    layer: str
    maps: dict[int, np.ndarray]
    probabilities: tuple[float, ...]


def _grad_cam(model: nn.Module, head_path: str, batch: Tensor, classes: Sequence[int]) -> _Result:
    """One forward pass, then one backward pass per class (the first also picks the
    layer). ``batch`` holds one picture."""
    paths = candidate_layers(model, head_path)
    size = (batch.shape[-2], batch.shape[-1])
    batch = batch.to(_device_of(model)).detach().requires_grad_(True)
    with _evaluating(model), _recording(model, paths) as recorded:
        logits = _logits(model(batch))
    count = logits.shape[1]
    wanted = list(dict.fromkeys(int(c) for c in classes))
    if any(not 0 <= c < count for c in wanted):
        raise ValueError(f"class indices {wanted} outside the model's {count} classes")
    first = wanted[0] if wanted else int(logits[0].argmax())
    layer, grid, gradient = _choose(recorded, paths, logits[0, first], size)
    activation = grid.of_first(recorded[layer].detach())
    maps: dict[int, np.ndarray] = {}
    for index in wanted:
        if index != first:
            gradient = _gradient(logits[0, index], recorded[layer])
        maps[index] = _cam(activation, grid.of_first(gradient), size)
    probabilities = torch.softmax(logits[0].detach().float(), dim=0)
    return _Result(layer, maps, tuple(float(p) for p in probabilities))


def heatmap_layer(model: nn.Module, head_path: str, size: int = 224) -> str:
    """The layer whose activations ``explain`` uses, found on a probe picture of
    seeded noise at ``size`` pixels a side (the preprocessing's crop size; ViT
    accepts only its own)."""
    probe = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(PROBE_SEED))
    with torch.inference_mode(False), torch.enable_grad():
        return _grad_cam(model, head_path, probe, ()).layer


def _picture(batch: Tensor, preprocessing: Preprocessing) -> np.ndarray:
    """The normalised input back as H x W x 3 uint8: exactly the pixels the model saw."""
    mean = torch.tensor(preprocessing.mean).view(3, 1, 1)
    std = torch.tensor(preprocessing.std).view(3, 1, 1)
    pixels = (batch[0].detach().cpu() * std + mean).mul_(255).round_().clamp_(0, 255)
    return pixels.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def explain(
    model: nn.Module,
    head_path: str,
    preprocessing: Preprocessing,
    path: str | Path,
    classes: Sequence[int],
) -> Explanation:
    """Heatmaps for ``classes`` (say the predicted and the true class) on one picture,
    preprocessed exactly as for evaluation.

    Works inside ``torch.inference_mode()`` or ``no_grad()`` too: the gradients are
    computed in a local grad-enabled block. Raises ``UserFacingError`` when the
    picture cannot be read or the network has no layer with positions, and
    ``ValueError`` for an index that is not one of the model's classes (leave out a
    record's -1, a true class the model does not know).
    """
    try:
        image = load_for_model(path, preprocessing.resize_size, preprocessing.interpolation)
    except ImageProblem as problem:
        raise UserFacingError(f"Cannot show {Path(path).name}: {problem}.") from problem
    with torch.inference_mode(False), torch.enable_grad():
        batch = eval_transform(preprocessing)(image).unsqueeze(0).float()
        result = _grad_cam(model, head_path, batch, classes)
    return Explanation(
        _picture(batch, preprocessing), result.maps, result.probabilities, result.layer
    )
