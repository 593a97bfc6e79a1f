"""CLI layer: the recipe's options, shared by the commands that train, measure
training, or train probes (train, advise, suspects), and the recipe they make."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..engine.recipe import Recipe


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", help="recipe JSON; options given here override it")
    parser.add_argument("--backbone")
    parser.add_argument("--weights", help="default, none, or a .safetensors/.pt/.pth file")
    parser.add_argument("--freeze", help="head, last:N or none")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--val-split", type=float)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--optimizer", choices=("adamw", "sgd"))
    parser.add_argument("--schedule", choices=("cosine", "onecycle", "constant"))
    parser.add_argument("--augmentation", choices=("none", "light", "standard"))
    parser.add_argument(
        "--augmented-copies",
        type=int,
        metavar="N",
        help="head-only runs: also compute features of N augmented copies of each picture",
    )
    parser.add_argument(
        "--head-fit",
        choices=("optimum", "epochs"),
        help="head-only runs: solve the head to its optimum (default) or train it by epochs",
    )
    parser.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    parser.add_argument(
        "--unfreeze-after",
        type=int,
        metavar="K",
        help="train only the head for K epochs, then the --freeze plan",
    )
    parser.add_argument("--workers", type=int, help="data-loading processes")


_FIELDS = (
    ("backbone", "backbone"),
    ("weights", "weights"),
    ("epochs", "epochs"),
    ("batch_size", "batch_size"),
    ("lr", "lr"),
    ("val_split", "val_fraction"),
    ("device", "device"),
    ("seed", "seed"),
    ("optimizer", "optimizer"),
    ("schedule", "schedule"),
    ("augmentation", "augmentation"),
    ("patience", "early_stopping_patience"),
    ("workers", "workers"),
    ("head_fit", "head_fit"),
)
"""(option attribute, recipe field) for the options copied as they are."""


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The ``--recipe`` file (if any) with the options given on the command line; a
    command may leave some options out of its parser (they count as not given)."""
    from ..engine.errors import RecipeError
    from ..engine.freezing import FreezePlan, GradualUnfreeze
    from ..engine.recipe import Recipe

    recipe_file = getattr(args, "recipe", None)
    base = Recipe.load(recipe_file) if recipe_file else None
    dataset = args.data or (base.dataset if base else None)
    if not dataset:
        raise RecipeError("Give a dataset folder (or a --recipe that names one).")
    # Recipe fields of many types, passed on as Recipe.replace and Recipe() take them.
    changes: dict[str, Any] = {"dataset": str(Path(dataset).expanduser())}
    for option, field in _FIELDS:
        value = getattr(args, option, None)
        if value is not None:
            changes[field] = value
    if getattr(args, "freeze", None) is not None:
        changes["freeze"] = FreezePlan(args.freeze)
    if getattr(args, "unfreeze_after", None) is not None:
        changes["gradual_unfreeze"] = GradualUnfreeze(args.unfreeze_after)
    if getattr(args, "augmented_copies", None) is not None:
        changes["cached_views"] = 1 + args.augmented_copies
    return base.replace(**changes) if base else Recipe(**changes)
