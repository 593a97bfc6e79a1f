"""CLI layer: commands about datasets and backbones: inspect, backbones, sample."""

from __future__ import annotations

import argparse
import sys

from .common import EXIT_BAD_INPUT, EXIT_OK, Commands, Handler, StderrProgress, print_json


def add_commands(commands: Commands) -> dict[str, Handler]:
    inspect = commands.add_parser("inspect", help="classes, counts, split and skipped files")
    inspect.add_argument("data", help="dataset folder")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument("--val-split", type=float, default=0.2)
    inspect.add_argument("--seed", type=int, default=0)

    backbones = commands.add_parser("backbones", help="list the available backbones")
    backbones.add_argument("--json", action="store_true")
    backbones.add_argument(
        "--timm",
        action="store_true",
        help="also list every pretrained timm model (needs the timm extra)",
    )

    sample = commands.add_parser("sample", help="draw a small practice dataset of shapes")
    sample.add_argument("folder", help="new folder to create")
    sample.add_argument("--per-class", type=int, default=60)
    sample.add_argument("--seed", type=int, default=0)
    return {"inspect": _cmd_inspect, "backbones": _cmd_backbones, "sample": _cmd_sample}


def _cmd_inspect(args: argparse.Namespace) -> int:
    from ..engine.inspection import inspect_dataset

    report = inspect_dataset(
        args.data,
        args.val_split,
        args.seed,
        None if args.json else StderrProgress("Checking pictures"),
    )
    if args.json:
        print_json(report.to_dict())
        return EXIT_BAD_INPUT if report.errors else EXIT_OK
    print(f"Dataset: {report.root} ({report.split_source} split)")
    width = max(len(name) for name in report.classes)
    print(f"  {'class':<{width}}  train    val")
    for name, n_train, n_val in zip(report.classes, report.train_counts, report.val_counts):
        print(f"  {name:<{width}}  {n_train:5d}  {n_val:5d}")
    print(f"  {'total':<{width}}  {len(report.train):5d}  {len(report.val):5d}")
    if report.skipped:
        print(f"Skipped {len(report.skipped)} files:")
        for skipped in report.skipped:
            print(f"  {skipped.path}: {skipped.reason}")
    for warning in report.warnings:
        print(f"Warning: {warning}")
    for error in report.errors:
        print(f"Error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT if report.errors else EXIT_OK


def _cmd_backbones(args: argparse.Namespace) -> int:
    from ..engine.backbones import backbone_infos

    infos = backbone_infos(include_timm=args.timm)
    if args.json:
        print_json([info.to_dict() for info in infos])
        return EXIT_OK
    print(f"{'name':<40} {'family':<26} {'params':>8} {'top-1':>6} {'input':>5}  weights")
    for info in infos:
        top1 = f"{info.imagenet_top1:.1f}" if info.imagenet_top1 is not None else "-"
        known_size = info.weights == "download" and info.weights_size_mb is not None
        size = f" ({info.weights_size_mb:.0f} MB)" if known_size else ""
        mark = "  (default)" if info.default else ""
        params = f"{info.num_params / 1e6:7.1f}M" if info.num_params is not None else f"{'-':>8}"
        print(
            f"{info.name:<40} {info.family:<26} {params} {top1:>6} "
            f"{info.input_size:>5}  {info.weights}{size}{mark}"
        )
    return EXIT_OK


def _cmd_sample(args: argparse.Namespace) -> int:
    from ..engine.sample_data import generate_sample_dataset

    folder = generate_sample_dataset(
        args.folder,
        args.per_class,
        seed=args.seed,
        progress=StderrProgress("Drawing pictures", every=100),
    )
    print(f"Wrote a sample dataset to {folder}", file=sys.stderr)
    return EXIT_OK
