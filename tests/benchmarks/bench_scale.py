"""Benchmark: does the cost per picture stay flat from 1,000 to 50,000 pictures?

    python tests/benchmarks/bench_scale.py                      # 1,000, 10,000, 50,000
    python tests/benchmarks/bench_scale.py --quick              # 500 and 2,000, to try it out
    python tests/benchmarks/bench_scale.py --sizes 1000,5000
    python tests/benchmarks/bench_scale.py --package OLD/desktop  # time another copy

Writes small JPEGs (40 px, four drawn kinds from ``engine/sample_data.py``) once into a
temporary folder; each size's dataset is hard links to the first pictures of it. For
each size it measures, each stage in a process of its own so that its peak memory
(``ru_maxrss``) is its own:

- ``scan``: ``inspect_dataset`` (list, open every picture, split), and how many
  progress reports it made;
- ``head``: one head-only epoch through ``Trainer`` (``head_fit="epochs"``,
  ``epochs=1``) on the bundled EfficientNet-Lite0 with a cold feature cache: the
  run's own check, feature extraction at 224 px, one epoch of the head, validation;
- ``head_cached``: the same run again, its features now read from the cache.

On a slow machine ``--backbone wide_tiny --weights none`` replaces Lite0 with a tiny
network at 32 px whose head sees Lite0's 1,280 features per picture: the data path and
the feature memory are what is measured, not the convolutions.

Time per picture is the stage's wall time (imports excluded) over the pictures; peak
memory is the stage process's own (data-loading workers are other processes). Then
the two targets of issue 14: time per picture at the largest size within 1.3x of the
smallest, and peak memory at the largest at most 1.5 GB above the smallest.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KINDS = ("circle", "square", "triangle", "stripes")
SIDE = 40
STAGES = ("scan", "head", "head_cached")
TIME_RATIO_TARGET = 1.3
MEMORY_GROWTH_TARGET_MB = 1.5 * 1024


def make_pictures(folder: Path, count: int) -> None:
    """``count`` pictures in all, spread evenly over the kinds, each drawn once."""
    import numpy as np

    from finetune_studio.engine.sample_data import draw_picture

    rng = np.random.default_rng(0)
    for kind in KINDS:
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        draw_picture(kind, rng, SIDE).save(folder / kind / f"{index:06d}.jpg", quality=85)


def link_dataset(pictures: Path, root: Path, count: int) -> Path:
    """A dataset of the first ``count`` pictures, as hard links (no copy)."""
    for kind in KINDS:
        (root / kind).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        name = f"{index:06d}.jpg"
        os.link(pictures / kind / name, root / kind / name)
    return root


def stage_scan(data: Path) -> dict[str, float]:
    from finetune_studio.engine.inspection import inspect_dataset

    reports = 0

    def progress(done: int, total: int) -> None:
        nonlocal reports
        reports += 1

    report = inspect_dataset(data, progress=progress)
    return {"pictures": len(report.train) + len(report.val), "progress_reports": reports}


WIDE_TINY = "wide_tiny"
FEATURE_WIDTH = 1280  # EfficientNet-Lite0's: what the head sees, per picture


def register_wide_tiny() -> None:
    """A stand-in for a real backbone on a slow machine: a small network at 32 px whose
    head sees as many features per picture as EfficientNet-Lite0's (1,280 floats), so
    the data path and the feature memory are measured, not the convolutions."""
    from torch import nn

    from finetune_studio.engine.backbones import BackboneSpec, register_backbone
    from finetune_studio.engine.preprocessing import Preprocessing

    def build() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, FEATURE_WIDTH),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(FEATURE_WIDTH, 1000),
        )

    half = (0.5, 0.5, 0.5)
    register_backbone(
        BackboneSpec(
            name=WIDE_TINY,
            family="Bench",
            build=build,
            preprocessing=Preprocessing(36, 32, half, half, "bilinear"),
            num_params=sum(p.numel() for p in build().parameters()),
            imagenet_top1=None,
            head_path="9",
        )
    )


def stage_head(data: Path, cache: Path, backbone: str, weights: str) -> dict[str, float]:
    from finetune_studio.engine.feature_store import FeatureStore
    from finetune_studio.engine.recipe import Recipe
    from finetune_studio.engine.training import Trainer

    recipe = Recipe(
        dataset=str(data), backbone=backbone, weights=weights, head_fit="epochs", epochs=1
    )
    trainer = Trainer(recipe, feature_store=FeatureStore(cache))
    events = trainer.events()
    while True:
        try:
            next(events)
        except StopIteration as finished:
            result = finished.value
            break
    evaluation = result.evaluation
    return {
        "pictures": sum(1 for _ in data.rglob("*.jpg")),
        "val_acc": evaluation.accuracy if evaluation else float("nan"),
        "unreadable": len(trainer.unreadable),
    }


def run_stage(args: argparse.Namespace) -> None:
    # Imports cost seconds and do not depend on the size: keep them out of the timing.
    import torch  # noqa: F401

    import finetune_studio.engine.training  # noqa: F401

    started = time.perf_counter()
    if args.backbone == WIDE_TINY:
        register_wide_tiny()
    if args.stage == "scan":
        row = stage_scan(args.data)
    else:
        row = stage_head(args.data, args.cache, args.backbone, args.weights)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"stage": args.stage, "seconds": seconds, "peak_mb": peak_mb, **row}))


def measure(stage: str, data: Path, cache: Path, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ)
    paths = [str(args.package)] if args.package else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(Path(__file__).parents[1])])
    command = [sys.executable, __file__, "--stage", stage, "--data", str(data)]
    command += ["--cache", str(cache), "--backbone", args.backbone, "--weights", args.weights]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"stage {stage} on {data} failed:\n{done.stderr[-3000:]}")
    row: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def print_table(results: dict[int, dict[str, dict[str, float]]], stages: list[str]) -> None:
    print("\n| pictures | stage | ms per picture | peak memory (MB) | notes |")
    print("|---:|---|---:|---:|---|")
    for size, rows in results.items():
        for stage in stages:
            row = rows[stage]
            note = (
                f"{int(row['progress_reports'])} progress reports"
                if stage == "scan"
                else f"val acc {row['val_acc']:.1%}, {int(row['unreadable'])} unreadable"
            )
            per_picture = 1000 * row["seconds"] / size
            print(f"| {size:,} | {stage} | {per_picture:.2f} | {row['peak_mb']:.0f} | {note} |")
    print_added_cost(results, stages)
    smallest, largest = min(results), max(results)
    print(f"\nTargets, {largest:,} against {smallest:,} pictures:")
    for stage in stages:
        small, large = results[smallest][stage], results[largest][stage]
        ratio = (large["seconds"] / largest) / (small["seconds"] / smallest)
        growth = large["peak_mb"] - small["peak_mb"]
        time_ok = "ok" if ratio <= TIME_RATIO_TARGET else "MISSED"
        memory_ok = "ok" if growth <= MEMORY_GROWTH_TARGET_MB else "MISSED"
        print(
            f"  {stage}: time per picture x{ratio:.2f} (target <= {TIME_RATIO_TARGET}, "
            f"{time_ok}); peak memory {growth:+.0f} MB (target <= "
            f"{MEMORY_GROWTH_TARGET_MB:.0f}, {memory_ok})"
        )


def print_added_cost(results: dict[int, dict[str, dict[str, float]]], stages: list[str]) -> None:
    """What one more picture costs between two sizes: the start-up (building the model,
    starting workers) left out, which the smallest size's time per picture includes."""
    print()
    for stage in stages:
        steps = []
        for small, large in itertools.pairwise(sorted(results)):
            added = results[large][stage]["seconds"] - results[small][stage]["seconds"]
            steps.append(f"{small:,} to {large:,}: {1000 * added / (large - small):.2f}")
        if steps:
            print(f"{stage}: ms per added picture, {'; '.join(steps)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="comma-separated picture counts (default 1000,10000,50000)")
    parser.add_argument("--quick", action="store_true", help="500 and 2,000 pictures")
    parser.add_argument("--stages", help=f"comma-separated, of {', '.join(STAGES)}")
    parser.add_argument("--package", type=Path, help="a folder holding the package to time")
    parser.add_argument(
        "--backbone",
        default="efficientnet_lite0",
        help=f"{WIDE_TINY}: a tiny network with Lite0's feature width, for slow machines",
    )
    parser.add_argument("--weights", default="default", help='"none": random weights')
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args)
        return
    default = "500,2000" if args.quick else "1000,10000,50000"
    sizes = sorted(int(size) for size in (args.sizes or default).split(","))
    stages = args.stages.split(",") if args.stages else list(STAGES)
    results: dict[int, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pictures = Path(tmp) / "pictures"
        started = time.perf_counter()
        make_pictures(pictures, max(sizes))
        print(f"Drew {max(sizes):,} pictures in {time.perf_counter() - started:.0f} s.")
        print(f"Backbone {args.backbone} (weights: {args.weights}).", flush=True)
        for size in sizes:
            data = link_dataset(pictures, Path(tmp) / f"data-{size}", size)
            cache = Path(tmp) / f"cache-{size}"
            results[size] = {}
            for stage in stages:
                row = measure(stage, data, cache, args)
                results[size][stage] = row
                seconds, peak = row["seconds"], row["peak_mb"]
                print(f"{size:>7,} {stage:<12} {seconds:8.1f} s  {peak:6.0f} MB", flush=True)
    print_table(results, stages)


if __name__ == "__main__":
    main()
