"""Benchmark: how long does "Compare backbones" take, and where does the time go?

    python tests/benchmarks/bench_compare.py                     # the default set, 300 pictures
    python tests/benchmarks/bench_compare.py --backbones efficientnet_lite0,resnet18
    python tests/benchmarks/bench_compare.py --per-class 100 --pictures-per-class 100

Draws the app's sample dataset (6 classes of shapes and textures; 50 pictures each
by default: 300 pictures), then compares the default set (every backbone whose
weights need no network: the bundled EfficientNet-Lite0/1/2 on a fresh install) with
default settings, as ``finetune-studio-cli compare DATA`` does: once with a cold
feature cache and once warm. It prints each backbone's figures and, per backbone,
the seconds spent computing features, in the k-fold linear probe and timing the
network; then it trains the most accurate backbone head-only and shows that its
features come from the cache. Times are this process's wall time on this machine,
with the load average (other work on the machine slows them) and the CPU time the
comparison used (this process's threads and its finished worker processes): on an
idle 2-core machine the wall time lies between half of it and all of it.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from finetune_studio.engine.compare import BackboneComparison, Comparison
from finetune_studio.engine.events import Log, StageProgress
from finetune_studio.engine.feature_store import FeatureStore
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.sample_data import generate_sample_dataset
from finetune_studio.engine.training import Trainer

PHASES = {"computing features": "features", "timing": "timing"}  # the rest: the probe


def phase_of(stage: str) -> tuple[str, str]:
    """(backbone, phase) of a stage named "<backbone>: <what>"."""
    backbone, _, what = stage.partition(": ")
    return backbone, next((p for key, p in PHASES.items() if what.startswith(key)), "probe")


def compare(
    recipe: Recipe, names: list[str] | None, per_class: int, store: FeatureStore
) -> tuple[Comparison, dict[tuple[str, str], float]]:
    """The comparison and the seconds per (backbone, phase): from one stage's event to
    the next, so a phase's time counts until the next phase reports."""
    task = BackboneComparison(recipe, names, per_class, feature_store=store)
    spent: dict[tuple[str, str], float] = defaultdict(float)
    current: tuple[str, str] | None = None
    mark = time.perf_counter()
    events = task.events()
    while True:
        try:
            event = next(events)
        except StopIteration as finished:
            outcome = finished.value
            break
        now = time.perf_counter()
        if current is not None:
            spent[current] += now - mark
        mark = now
        if isinstance(event, StageProgress):
            current = phase_of(event.stage)
        elif isinstance(event, Log) and event.level == "warning":
            print(f"  warning: {event.message}")
    assert outcome is not None
    return outcome, spent


def cpu_seconds() -> float:
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def show(
    label: str, comparison: Comparison, spent: dict[tuple[str, str], float], cpu: float
) -> None:
    load = os.getloadavg()[0]
    print(
        f"\n{label}: {comparison.seconds:.1f} s ({cpu:.1f} s of CPU time) for "
        f"{len(comparison.scores)} backbone(s) on {comparison.pictures} pictures "
        f"({comparison.threads} threads, load average {load:.1f})"
    )
    print(
        f"{'backbone':<22}{'accuracy':>16}{'ms b1':>9}{'ms b32':>9}{'params':>9}{'MB':>7}"
        f"{'features':>10}{'probe':>8}{'timing':>8}"
    )
    for s in comparison.scores:
        size = "-" if s.size_mb is None else f"{s.size_mb:.1f}"
        phases = [spent.get((s.backbone, p), 0.0) for p in ("features", "probe", "timing")]
        print(
            f"{s.backbone:<22}{s.accuracy:>9.1%} ± {s.accuracy_std:4.1%}"
            f"{s.latency_ms_b1:>9.1f}{s.latency_ms_b32:>9.1f}{s.params / 1e6:>8.1f}M{size:>7}"
            + "".join(f"{seconds:>7.1f}s" for seconds in phases)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", help="a,b,c (default: those whose weights are here)")
    parser.add_argument("--per-class", type=int, default=50, help="the comparison's cap")
    parser.add_argument("--pictures-per-class", type=int, default=50, help="drawn per class")
    args = parser.parse_args()
    names = args.backbones.split(",") if args.backbones else None
    with tempfile.TemporaryDirectory() as folder:
        root = generate_sample_dataset(Path(folder) / "shapes", per_class=args.pictures_per_class)
        store = FeatureStore(Path(folder) / "cache")
        recipe = Recipe(dataset=str(root))  # default settings, as the CLI's
        for label in ("cold cache", "warm cache"):
            cpu = cpu_seconds()
            comparison, spent = compare(recipe, names, args.per_class, store)
            show(label, comparison, spent, cpu_seconds() - cpu)
        best = comparison.best()
        assert best is not None
        started = time.perf_counter()
        trainer = Trainer(recipe.replace(backbone=best.backbone), feature_store=store)
        cached = [
            e.message
            for e in trainer.events()
            if isinstance(e, Log) and "from the cache" in e.message
        ]
        print(
            f"\nHead-only run of {best.backbone}: {time.perf_counter() - started:.1f} s; "
            f"{cached[0] if cached else 'no features from the cache'}"
        )


if __name__ == "__main__":
    main()
