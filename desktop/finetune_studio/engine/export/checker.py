"""Engine layer: the one check every export passes before it is kept, and its figures.

A written artifact is loaded back with its own runtime and run on the same real
pictures as the PyTorch model. Its top-1 answers must agree with the model's (all of
them for float formats, ``INT8_AGREEMENT`` for int8) and, for float formats, its
probabilities must match within ``PARITY_TOLERANCE``; otherwise ``ExportCheckFailed``
says which check failed and by how much, and the caller keeps nothing. The figures of
a kept artifact (agreement, accuracy, size, latency at batch 1) are what the Results
table, the CLI and ``model.json`` show.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from .common import PARITY_TOLERANCE
from .pictures import CheckPictures

Runtime = Callable[[np.ndarray], np.ndarray]
"""A loaded artifact: a float32 NCHW batch in, logits out."""

INT8_AGREEMENT = 0.99
CHUNK = 32  # pictures per call when comparing; bounds memory on large models
WARM_UP_RUNS = 3
TIMED_RUNS = 20


class ExportCheckFailed(ExportError):
    """An artifact that does not behave like the model; nothing of it was kept."""


@dataclass(frozen=True)
class Requirement:
    """What a format must achieve to be kept."""

    agreement: float = 1.0
    probability_tolerance: float | None = PARITY_TOLERANCE  # None: not checked (int8)


@dataclass(frozen=True)
class ExportFigures:
    """One row of the export table: ``model.json``'s ``exports[format]``."""

    format: str
    file: str
    agreement: float  # fraction of pictures with the PyTorch model's top-1 answer
    accuracy: float | None  # None when no picture has a known true class
    size_bytes: int
    latency_ms_b1: float  # median per picture at batch 1 on this machine
    pictures: int
    pictures_from: str = "validation"  # or "training", or "synthetic" (no picture readable)

    def to_dict(self) -> dict[str, object]:
        row = asdict(self)
        del row["format"]
        return row

    def cells(self) -> tuple[str, str, str, str, str]:
        """The row as the Results table and the CLI print it (``COLUMNS``)."""
        accuracy = "–" if self.accuracy is None else f"{self.accuracy:.1%}"
        return (
            self.format,
            f"{self.agreement:.1%}",
            accuracy,
            f"{self.size_bytes / 1e6:.2f} MB",
            f"{self.latency_ms_b1:.2f} ms",
        )


COLUMNS = ("Format", "Agreement", "Accuracy", "Size", "Latency (batch 1)")


def figures_table(rows: list[ExportFigures]) -> str:
    """Rows as aligned plain text, and which pictures they were measured on."""
    lines = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    text = "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths))
        )
        for line in lines
    )
    if rows:
        text += f"\nMeasured on {rows[-1].pictures} {rows[-1].pictures_from} pictures."
    return text


@dataclass(frozen=True)
class Reference:
    """The PyTorch model's logits on the check pictures, computed once per export."""

    pictures: CheckPictures
    logits: np.ndarray


def torch_runtime(model: nn.Module) -> Runtime:
    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).float().numpy()  # type: ignore[no-any-return]

    return run


def run_chunked(runtime: Runtime, images: np.ndarray) -> np.ndarray:
    return np.concatenate([runtime(images[i : i + CHUNK]) for i in range(0, len(images), CHUNK)])


def reference_of(model: nn.Module, pictures: CheckPictures) -> Reference:
    images = np.ascontiguousarray(pictures.images.numpy(), dtype=np.float32)
    return Reference(pictures, run_chunked(torch_runtime(model.eval()), images))


def median_latency_ms(runtime: Runtime, picture: np.ndarray) -> float:
    """Median wall time of one picture through ``runtime``, after a warm-up (the first
    calls pay for allocation and kernel selection, which a deployed model pays once)."""
    for _ in range(WARM_UP_RUNS):
        runtime(picture)
    times = []
    for _ in range(TIMED_RUNS):
        start = time.perf_counter()
        runtime(picture)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _accuracy(predicted: np.ndarray, labels: tuple[int, ...]) -> float | None:
    known = np.asarray(labels) >= 0
    if not known.any():
        return None
    return float((predicted[known] == np.asarray(labels)[known]).mean())


def _verify(label: str, outputs: np.ndarray, reference: Reference, need: Requirement) -> float:
    """The agreement, or ``ExportCheckFailed`` naming the failed check and its margin."""
    pictures = reference.pictures
    if outputs.shape != reference.logits.shape:
        raise ExportCheckFailed(
            f"The {label} export gives outputs of shape {tuple(outputs.shape)} where the "
            f"model gives {tuple(reference.logits.shape)}; it was not kept."
        )
    agreement = float((outputs.argmax(1) == reference.logits.argmax(1)).mean())
    if agreement < need.agreement:
        raise ExportCheckFailed(
            f"The {label} export failed the agreement check: it gives the PyTorch model's "
            f"answer for {agreement:.1%} of {len(pictures)} {pictures.source} pictures, "
            f"{need.agreement:.0%} required; it was not kept."
        )
    if need.probability_tolerance is not None:
        difference = float(np.abs(_softmax(outputs) - _softmax(reference.logits)).max())
        if difference > need.probability_tolerance:
            raise ExportCheckFailed(
                f"The {label} export failed the probability check: its probabilities "
                f"differ from the PyTorch model's by up to {difference:.1e} "
                f"(at most {need.probability_tolerance:.0e} allowed); it was not kept."
            )
    return agreement


def check_artifact(
    name: str,
    label: str,
    artifact: Path,
    shown_as: str,
    runtime: Runtime,
    reference: Reference,
    need: Requirement,
) -> ExportFigures:
    """Compare a loaded artifact with the model, then measure it. ``artifact`` is the
    file as written (its size is measured); ``shown_as`` is what the record calls it."""
    pictures = reference.pictures
    images = np.ascontiguousarray(pictures.images.numpy(), dtype=np.float32)
    outputs = np.asarray(run_chunked(runtime, images), dtype=np.float32)
    agreement = _verify(label, outputs, reference, need)
    return ExportFigures(
        format=name,
        file=shown_as,
        agreement=agreement,
        accuracy=_accuracy(outputs.argmax(1), pictures.labels),
        size_bytes=artifact.stat().st_size,
        latency_ms_b1=median_latency_ms(runtime, images[:1]),
        pictures=len(pictures),
        pictures_from=pictures.source,
    )
