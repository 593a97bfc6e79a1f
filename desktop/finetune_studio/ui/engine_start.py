"""UI layer: the engine's start-up, in the background once the window is shown.

Importing torch and the engine takes seconds; the window appears first and its steps
that need the engine come alive when ``load_engine`` has returned (``MainWindow``'s
``engine_ready``).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .workers.tasks import ProgressFn

if TYPE_CHECKING:
    import torch

    from ..engine.backbones import BackboneInfo


@dataclass(frozen=True)
class EngineInfo:
    """What the window needs once torch is loaded."""

    backbones: list[BackboneInfo]
    device: str  # this computer's device for "automatic", in words (the status bar)
    devices: tuple[str, ...] = ("cpu",)  # the forced choices that exist here


def load_engine(progress: ProgressFn, cancel: threading.Event) -> EngineInfo:
    """Runs in a worker thread: import torch and the engine, describe the device."""
    from ..engine.devices import available_devices, resolve_device
    from ..engine.export import load_model_folder  # noqa: F401 - warm the import
    from ..engine.training import Trainer  # noqa: F401 - warm the import

    device = resolve_device("auto")
    return EngineInfo(backbones_to_list(), describe_machine(device), available_devices())


def backbones_to_list() -> list[BackboneInfo]:
    """The registry's backbones and timm's. timm is an optional extra: one that fails to
    import (built for another torch, say) costs its own models, not the window."""
    from ..engine.backbones import backbone_infos

    try:
        return backbone_infos(include_timm=True)
    except Exception as error:  # any failure inside timm's import or listing
        print(f"finetune-studio: timm's models are not listed: {error!r}", file=sys.stderr)
        return backbone_infos()


def import_review_modules(progress: ProgressFn, cancel: threading.Event) -> None:
    """Runs in a worker thread once the engine has loaded: import what the review,
    compare and advisor jobs would import on first use. cleanlab brings scikit-learn,
    SciPy and pandas: ~95,000 long-lived objects (1.4 s here). Left unfrozen, they made
    every later full garbage collection ~60 ms longer, and such a collection holds
    Python's lock, a stall of the window wherever it runs (measured while the suspects
    were found, then the backbones compared). Imported now, they are frozen with the
    engine's (``freeze_long_lived_objects``)."""
    from cleanlab.filter import find_label_issues  # noqa: F401 - warm the import

    from ..engine import compare, runs  # noqa: F401 - warm the import
    from ..engine.advice import advisor  # noqa: F401 - warm the import
    from ..engine.review import out_of_fold, repair_actions, suspects  # noqa: F401


def freeze_long_lived_objects(collect_all: bool) -> None:
    """torch and torchvision leave ~440,000 long-lived objects, and a full garbage
    collection walks them all (~240 ms here) holding Python's lock: a stall of the
    window wherever it runs, and one during training did. Frozen, later collections
    skip them. Called when the engine has loaded (``collect_all``: garbage from before,
    Qt objects among it, is finalised here rather than later in any thread) and again
    when the review's modules have (``import_review_modules``): there only the young
    generations are collected first, since a full collection found nothing to free and
    stalled the window 65-122 ms. In the GUI thread: a collection in a worker thread
    can finalise Qt objects (a pyqtgraph item of a closed widget) there, and it
    deadlocked with the GUI thread painting (seen in the suite: the worker waiting in
    gc.collect, the GUI thread in pyqtgraph's boundingRect)."""
    gc.collect(generation=2 if collect_all else 1)
    gc.freeze()


def describe_machine(device: torch.device) -> str:
    """The machine, not torch's current thread setting: a run sets that process-wide
    (``torch.set_num_threads``), so it would read 1 after a run on 2 cores."""
    from ..engine.devices import describe_device

    if device.type != "cpu":
        return describe_device(device)
    cores = os.cpu_count() or 1
    return f"CPU ({cores} core{'' if cores == 1 else 's'})"
