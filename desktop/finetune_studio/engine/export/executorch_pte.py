"""Engine layer: the ExecuTorch export (.pte, XNNPACK), for phones and small devices.

An optional extra (``pip install 'finetune-studio[executorch]'``). The program takes
one picture at a time, as an app on a phone gives it; the checker feeds it the
validation pictures one by one through ExecuTorch's own runtime. A .pte has no
free-form metadata, so the class names, preprocessing and calibration are stored
as constant methods (``class_names_json`` and so on: the JSON text's UTF-8 bytes
as a uint8 tensor), which any ExecuTorch runtime can call.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ExportError
from .checker import Runtime
from .common import LoadedModel, example_batch, self_description
from .pictures import PictureSource

METHOD_SUFFIX = "_json"


@contextmanager
def _quiet() -> Iterator[None]:
    """executorch 1.5 warns of its own use of deprecated importlib calls and of its
    runtime API being experimental, and torchao (which it imports) logs that torch 2.14
    no longer needs an enum registered: nothing a user of the export can act on."""
    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="executorch")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            yield
    finally:
        pytree_log.setLevel(level)


def _executorch() -> Any:
    try:
        with _quiet():
            import executorch.exir
    except ImportError as exc:
        raise ExportError(
            "ExecuTorch export needs the executorch extra: "
            "pip install 'finetune-studio[executorch]'."
        ) from exc
    return executorch.exir


def write_pte(loaded: LoadedModel, path: Path, pictures: PictureSource) -> None:
    exir = _executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    model = loaded.model.eval()
    program = torch.export.export(model, (example_batch(loaded.preprocessing)[:1],))
    constants = {
        f"{key}{METHOD_SUFFIX}": torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8)
        for key, text in self_description(loaded).items()
    }
    with _quiet():
        lowered = exir.to_edge_transform_and_lower(
            program, partitioner=[XnnpackPartitioner()], constant_methods=constants
        )
        path.write_bytes(lowered.to_executorch().buffer)


def _program(path: Path) -> Any:
    _executorch()
    with _quiet():
        from executorch.runtime import Runtime as ExecuTorchRuntime

        return ExecuTorchRuntime.get().load_program(path)


def read_pte_description(path: Path) -> dict[str, str]:
    """The JSON texts the file carries (``self_description``'s keys)."""
    program = _program(path)
    names = [name for name in program.method_names if name.endswith(METHOD_SUFFIX)]
    return {
        name.removesuffix(METHOD_SUFFIX): bytes(
            program.load_method(name).execute([])[0].tolist()
        ).decode("utf-8")
        for name in names
    }


def load_pte(path: Path) -> Runtime:
    forward = _program(path).load_method("forward")

    def run(batch: np.ndarray) -> np.ndarray:
        rows = [forward.execute([torch.from_numpy(row[None])])[0] for row in batch]
        return torch.cat(rows).float().numpy()

    return run
