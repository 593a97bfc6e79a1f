"""CLI layer: the `compare` command: backbones side by side on the user's pictures.

Prints one line per backbone (most accurate first), or with ``--json`` a list of
``{"backbone", "accuracy", "accuracy_std", "latency_ms_b1", "latency_ms_b32",
"params", "size_mb"}`` in the order the backbones were named. Progress and notes go
to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .common import EXIT_OK, EXIT_STOPPED, Commands, Handler, print_json, run_cancellable


def add_commands(commands: Commands) -> dict[str, Handler]:
    compare = commands.add_parser(
        "compare",
        help="compare backbones on your pictures: linear-probe accuracy, latency, size",
    )
    compare.add_argument("data", help="dataset folder (one subfolder per class)")
    compare.add_argument(
        "--backbones",
        metavar="a,b,c",
        help="backbones to compare (default: every one whose weights need no download)",
    )
    compare.add_argument(
        "--per-class",
        type=int,
        metavar="N",
        help="pictures per class at most (default 50)",
    )
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    compare.add_argument("--seed", type=int, help="draws the sample and the folds")
    compare.add_argument("--workers", type=int, help="data-loading processes")
    return {"compare": _cmd_compare}


if TYPE_CHECKING:
    from ..engine.compare import BackboneScore


def _cmd_compare(args: argparse.Namespace) -> int:
    from ..engine.compare import DEFAULT_PER_CLASS, BackboneComparison
    from ..engine.recipe import Recipe

    fields = {
        name: value
        for name in ("device", "seed", "workers")
        if (value := getattr(args, name)) is not None
    }
    recipe = Recipe(dataset=args.data, **fields)
    names = None
    if args.backbones is not None:
        names = [name.strip() for name in args.backbones.split(",") if name.strip()]
    per_class = DEFAULT_PER_CLASS if args.per_class is None else args.per_class
    comparison = run_cancellable(BackboneComparison(recipe, names, per_class), "comparison")
    if comparison is None:
        return EXIT_STOPPED
    if args.json:
        print_json([score.to_dict() for score in comparison.scores])
    else:
        _print_table(comparison.scores)
    print(comparison.summary(), file=sys.stderr)
    return EXIT_OK


def _print_table(scores: Sequence[BackboneScore]) -> None:
    """Most accurate first; the faster at batch 1 between equals."""
    rows = sorted(scores, key=lambda s: (-s.accuracy, s.latency_ms_b1))
    width = max([len("backbone"), *(len(s.backbone) for s in rows)])
    print(f"{'backbone':<{width}}  accuracy        ms/pic b1  ms/pic b32  params      size MB")
    for s in rows:
        size = "-" if s.size_mb is None else f"{s.size_mb:.1f}"
        print(
            f"{s.backbone:<{width}}  {s.accuracy:6.1%} ± {s.accuracy_std:5.1%}"
            f"  {s.latency_ms_b1:9.2f}  {s.latency_ms_b32:10.2f}"
            f"  {s.params / 1e6:6.2f} M  {size:>8}"
        )
