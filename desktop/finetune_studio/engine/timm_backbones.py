"""Engine layer: timm's pretrained models as backbones, named ``timm/<model>.<tag>``.

The name is the weights' Hugging Face Hub id (timm publishes each pretrained model
as ``timm/<model>.<tag>``), so a recipe or an export's ``model.json`` says where
the network comes from, and loading it rebuilds it through timm (``timm/<model>``
alone means the model's default tag). timm is optional (the ``timm`` extra): without
it the registry lists no timm model and such a name says how to install it.

- Architecture: ``timm.create_model`` with random weights; the layer tree is timm's
  own named modules; the head is the module timm's ``pretrained_cfg["classifier"]``
  names.
- Preprocessing: from the tag's pretrained configuration (input size, crop
  fraction, mean, std, interpolation).
- Weights: from the Hugging Face cache (``HF_HUB_CACHE`` or ``HF_HOME``: what timm
  or ``hf download`` fetched before), else our copy in torch's cache, else downloaded
  there by ``weights.download`` (progress, cancel, the no-network message). The file
  is read by our reader (no pickled code), then handed to timm's own loading as a
  state-dict override, so timm's checkpoint filters for the model still apply.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import threading
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .backbones import TIMM_PREFIX, BackboneInfo, BackboneSpec, StateDict
from .errors import UserFacingError, WeightsError
from .preprocessing import Preprocessing
from .weights import DownloadProgress, download, hub_checkpoint_dir, read_state_dict

HUB_ENDPOINT = "https://huggingface.co"
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")  # timm's order of preference
HIDDEN_PREFIX = "test_"  # timm's tiny test models: resolvable by name, not listed
INSTALL_HINT = "pip install 'finetune-studio[timm]'"
_PLACEHOLDER_CLASSES = 1000  # a head to replace, for weights published without one


def timm_installed() -> bool:
    try:
        return importlib.util.find_spec("timm") is not None
    except ValueError:  # a test blocked it with sys.modules["timm"] = None
        return False


def _timm(name: str = "timm backbones") -> Any:
    try:
        import timm
    except ImportError:
        raise UserFacingError(
            f"{name} needs the timm package, which is not installed here: {INSTALL_HINT}"
        ) from None
    return timm


def hf_cache_dir() -> Path:
    """The Hugging Face Hub cache, by huggingface_hub's rules, read from the environment
    when called (huggingface_hub reads it once, at import)."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    cache_home = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache_home).expanduser() / "huggingface" / "hub"


def unsupported_reason(cfg: Any) -> str | None:
    """Why a pretrained configuration cannot be fine-tuned here, or None."""
    if not isinstance(cfg.classifier, str):
        return "it has no single classifier layer to replace (a distilled or headless model)"
    if cfg.custom_load and cfg.hf_hub_filename:  # custom_load alone concerns the original URL
        return "timm loads its weights with custom code"
    if not cfg.hf_hub_id:
        return "its weights are not on the Hugging Face Hub"
    if cfg.input_size[1] != cfg.input_size[2]:
        return "it takes non-square pictures"
    return None


def _pretrained_cfg(name: str) -> Any:
    """timm's pretrained configuration for ``timm/<model>[.<tag>]``; a clear error if none."""
    timm = _timm(name)
    model_name = name.removeprefix(TIMM_PREFIX)
    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except RuntimeError:  # a known architecture with an unknown tag
        cfg = None
    if cfg is None:
        import difflib

        close = difflib.get_close_matches(model_name, timm.list_pretrained(), n=3)
        hint = f" Did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise UserFacingError(f"timm has no pretrained model {model_name!r}.{hint}")
    reason = unsupported_reason(cfg)
    if reason:
        raise UserFacingError(f"{name} cannot be fine-tuned here: {reason}.")
    return cfg


def preprocessing_of(cfg: Any) -> Preprocessing:
    """timm's evaluation transform: resize to ``crop / crop_pct``, centre-crop."""
    crop = int(cfg.input_size[1])
    crop_pct = float(cfg.crop_pct or 0.875)
    return Preprocessing(
        resize_size=math.floor(crop / crop_pct),
        crop_size=crop,
        mean=tuple(float(m) for m in cfg.mean),  # type: ignore[arg-type]
        std=tuple(float(s) for s in cfg.std),  # type: ignore[arg-type]
        interpolation=str(cfg.interpolation or "bilinear"),
    )


def family_of(architecture: str) -> str:
    """``timm: <module>``, the timm module that defines the architecture (``resnet``)."""
    module = _timm().models.model_entrypoint(architecture).__module__
    return f"timm: {module.rsplit('.', 1)[-1]}"


def _head_classes(cfg: Any) -> int:
    return int(cfg.num_classes) or _PLACEHOLDER_CLASSES


def _create(model_name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    model: nn.Module = _timm().create_model(model_name, num_classes=num_classes, **kwargs)
    return model


@dataclass(frozen=True)
class HubWeights:
    """A timm model's pretrained weights on the Hugging Face Hub (a ``WeightsSource``)."""

    repo_id: str  # "timm/resnet18.a1_in1k"
    filenames: tuple[str, ...]
    model_name: str
    num_classes: int

    def own_copy(self, filename: str) -> Path:
        """Where a download of ours goes: torch's cache, beside torchvision's weights."""
        return hub_checkpoint_dir() / self.repo_id / filename

    def local_file(self) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        for filename in self.filenames:
            found = try_to_load_from_cache(self.repo_id, filename, cache_dir=hf_cache_dir())
            if isinstance(found, str):
                return Path(found)
            if self.own_copy(filename).is_file():
                return self.own_copy(filename)
        return None

    def status(self) -> str:
        return "cached" if self.local_file() is not None else "download"

    def url(self, filename: str) -> str:
        endpoint = os.environ.get("HF_ENDPOINT", HUB_ENDPOINT).rstrip("/")
        return f"{endpoint}/{self.repo_id}/resolve/main/{filename}"

    def fetch(self, progress: DownloadProgress | None, cancel: threading.Event | None) -> Path:
        """Download the first of ``filenames`` the Hub has (timm's older uploads have
        only ``pytorch_model.bin``)."""
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise WeightsError(
                f"The weights of {self.repo_id} are not on this computer, and HF_HUB_OFFLINE "
                f"forbids downloading them. Put {self.filenames[0]} from "
                f"{self.url(self.filenames[0])} at {self.own_copy(self.filenames[0])}, "
                "or load weights from a file instead."
            )
        for filename in self.filenames:
            try:
                return download(self.url(filename), self.own_copy(filename), progress, cancel)
            except WeightsError as exc:
                if not _not_on_the_hub(exc) or filename == self.filenames[-1]:
                    raise
        raise AssertionError("unreachable: the last filename re-raises")

    def load(self, progress: DownloadProgress | None, cancel: threading.Event | None) -> StateDict:
        path = self.local_file() or self.fetch(progress, cancel)
        return self.through_timm(read_state_dict(path), path)

    def through_timm(self, state: StateDict, path: Path) -> StateDict:
        """The checkpoint as the model's own state dict, after timm's filters for it."""
        try:
            model = _create(
                self.model_name,
                self.num_classes,
                pretrained=True,
                pretrained_cfg_overlay={"state_dict": state},
            )
        except (RuntimeError, KeyError, ValueError) as exc:
            raise WeightsError(
                f"The weights in {path} do not fit {TIMM_PREFIX}{self.model_name}: {exc}"
            ) from exc
        return model.state_dict()


def _not_on_the_hub(error: WeightsError) -> bool:
    cause = error.__cause__
    return isinstance(cause, urllib.error.HTTPError) and cause.code == 404


def _count_and_check_head(model_name: str, num_classes: int, head_path: str) -> int:
    """The parameter count, from the network built without memory (meta device)."""
    try:
        with torch.device("meta"):
            model = _create(model_name, num_classes)
    except Exception:  # a model whose constructor needs real tensors
        model = _create(model_name, num_classes)
    head = model.get_submodule(head_path)
    if not isinstance(head, (nn.Linear, nn.Conv2d)):
        raise UserFacingError(
            f"{TIMM_PREFIX}{model_name} cannot be fine-tuned here: its classifier "
            f"({head_path}) is a {type(head).__name__}, not a Linear or Conv2d layer."
        )
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=64)
def timm_spec(name: str) -> BackboneSpec:
    """The registry entry for ``timm/<model>[.<tag>]`` (built once per name)."""
    timm = _timm(name)
    cfg = _pretrained_cfg(name)
    model_name = name.removeprefix(TIMM_PREFIX)
    num_classes = _head_classes(cfg)
    hub_file = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else WEIGHTS_FILES
    weights = HubWeights(cfg.hf_hub_id, hub_file, model_name, num_classes)
    return BackboneSpec(
        name=name,
        family=family_of(cfg.architecture),
        build=functools.partial(_create, model_name, num_classes),
        preprocessing=preprocessing_of(cfg),
        num_params=_count_and_check_head(model_name, num_classes, cfg.classifier),
        imagenet_top1=None,
        code_version=f"timm {timm.__version__}",
        head_path=cfg.classifier,
        weights_source=weights,
        # Not bundled (``weights_source`` decides status and loading): these two let the
        # feature store key cached features on the weights file's content.
        bundled_weights=functools.partial(weights.load, None, None),
        bundled_weights_file=weights.local_file,
    )


def timm_backbone_infos() -> list[BackboneInfo]:
    """Every pretrained timm model that can be fine-tuned here, without building any
    (~0.2 s once timm is imported); empty without timm."""
    if not timm_installed():
        return []
    timm = _timm()
    infos = []
    for model_name in timm.list_pretrained():
        cfg = timm.models.get_pretrained_cfg(model_name)
        if model_name.startswith(HIDDEN_PREFIX) or unsupported_reason(cfg):
            continue
        hub_file = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else WEIGHTS_FILES
        weights = HubWeights(cfg.hf_hub_id, hub_file, model_name, _head_classes(cfg))
        infos.append(
            BackboneInfo(
                name=TIMM_PREFIX + model_name,
                family=family_of(cfg.architecture),
                num_params=None,
                imagenet_top1=None,
                input_size=int(cfg.input_size[1]),
                weights=weights.status(),
                weights_size_mb=None,
                default=False,
            )
        )
    return infos
