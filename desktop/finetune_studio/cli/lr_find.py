"""CLI layer: the `lr-find` command: ramp the learning rate on the run a recipe makes
and suggest one (``engine/lr_find.py``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .common import EXIT_OK, EXIT_STOPPED, Commands, Handler, print_json, run_cancellable
from .recipe_options import add_recipe_options, recipe_from_args

if TYPE_CHECKING:
    from ..engine.lr_find import LrFinding


def add_commands(commands: Commands) -> dict[str, Handler]:
    find = commands.add_parser(
        "lr-find",
        help="try learning rates from 1e-7 upwards on the recipe's run and suggest one",
    )
    find.add_argument("data", nargs="?", help="dataset folder (or taken from --recipe)")
    add_recipe_options(find)
    find.add_argument(
        "--json",
        action="store_true",
        help='machine-readable output: {"suggested_lr", "lrs": [...], "losses": [...]}',
    )
    return {"lr-find": _cmd_lr_find}


def _cmd_lr_find(args: argparse.Namespace) -> int:
    from ..engine.lr_find import LrFinder
    from ..engine.training import preflight

    recipe = recipe_from_args(args)
    preflight(recipe)
    finding = run_cancellable(LrFinder(recipe), "learning-rate search")
    if finding is None:
        return EXIT_STOPPED
    if args.json:
        print_json(finding.to_dict())
    else:
        print(_table(finding))
    return EXIT_OK


def _table(finding: LrFinding) -> str:
    """Every step's rate and smoothed loss, the suggestion marked, then the verdict."""
    lines = [f"  {'learning rate':>13}  {'loss':>8}"]
    for index, (lr, loss) in enumerate(zip(finding.lrs, finding.losses, strict=True)):
        mark = "  <- suggested" if index == finding.suggestion_index else ""
        lines.append(f"  {lr:>13.2e}  {loss:>8.4f}{mark}")
    lines.append("")
    if finding.suggested_lr is None:
        lines.append("No suggestion: the loss diverged too soon to find where it falls.")
    else:
        lines.append(f"Suggested: --lr {finding.suggested_lr:.2g}")
    return "\n".join(lines)
