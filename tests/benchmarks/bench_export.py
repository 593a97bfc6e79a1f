"""Benchmark: every export format of the default backbone, side by side.

    python tests/benchmarks/bench_export.py                 # ~2 min on 2 cores
    python tests/benchmarks/bench_export.py --per-class 30 --keep /tmp/bench-model

Trains the bundled EfficientNet-Lite0 head-only on the app's drawn sample dataset
(``engine.sample_data``), writes its model folder, then exports it to each
format with the same checker the app uses: every artifact is loaded back by its own
runtime and compared with the PyTorch model on the run's validation pictures. It
prints one table: file size, median latency per picture at batch 1 on this machine,
agreement with the PyTorch model, accuracy, and how long the export took.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from finetune_studio.engine.backbones import DEFAULT_BACKBONE
from finetune_studio.engine.export import (
    FORMATS,
    Exporter,
    ExportFigures,
    PictureSource,
    available_formats,
    load_model_folder,
    save_model_folder,
)
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.sample_data import generate_sample_dataset
from finetune_studio.engine.training import Trainer, TrainingResult
from support.runs import drain


def train(dataset: Path) -> TrainingResult:
    recipe = Recipe(dataset=str(dataset), backbone=DEFAULT_BACKBONE, device="cpu")
    _, result = drain(Trainer(recipe).events())
    assert result is not None and result.evaluation is not None
    return result


def export_every_format(folder: Path) -> list[tuple[ExportFigures, float]]:
    """The PyTorch row, then each format with its export time (write, reload, check)."""
    loaded = load_model_folder(folder)
    exporter = Exporter(loaded, PictureSource.of_folder(folder, loaded))
    rows = [(exporter.pytorch_figures(folder / "model.safetensors"), 0.0)]
    for name in available_formats():
        started = time.perf_counter()
        file_name = FORMATS[name].file_name
        figures = exporter.export(name, folder / file_name, shown_as=file_name)
        rows.append((figures, time.perf_counter() - started))
    return rows


def print_table(rows: list[tuple[ExportFigures, float]]) -> None:
    print("| format | file | size | latency, batch 1 | agreement | accuracy | export time |")
    print("|---|---|---|---|---|---|---|")
    for figures, seconds in rows:
        _, agreement, accuracy, size, latency = figures.cells()
        took = f"{seconds:.1f} s" if seconds else "–"
        print(
            f"| {figures.format} | {figures.file} | {size} | {latency} | {agreement} "
            f"| {accuracy} | {took} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=60, help="drawn pictures per class")
    parser.add_argument("--keep", type=Path, help="write the model folder here and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        dataset = generate_sample_dataset(Path(scratch) / "sample", per_class=args.per_class)
        started = time.perf_counter()
        result = train(dataset)
        trained_s = time.perf_counter() - started
        folder = save_model_folder(result, args.keep or Path(scratch) / "model")
        rows = export_every_format(folder)

    assert result.evaluation is not None
    print(
        f"{DEFAULT_BACKBONE}, head trained on the drawn sample ({len(result.class_names)} "
        f"classes, {args.per_class} pictures each) in {trained_s:.0f} s; validation accuracy "
        f"{result.evaluation.accuracy:.1%}.\n"
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, CPU only.\n"
        f"Checked on {rows[0][0].pictures} {rows[0][0].pictures_from} pictures.\n"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
