"""CLI layer: reviewing a dataset with a model: suspects (the pictures most likely
mislabelled) and review (what a model folder makes of every picture).

Both print a table on stdout, or with ``--json`` a list of objects, most telling
first: suspects by score, review by loss (pictures of classes the model does not
know last). Progress and notes go to stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading

from .common import (
    EXIT_OK,
    EXIT_STOPPED,
    Commands,
    Handler,
    drain_steps,
    first_ctrl_c_calls,
    print_json,
    run_cancellable,
)
from .recipe_options import add_recipe_options, recipe_from_args


def add_commands(commands: Commands) -> dict[str, Handler]:
    suspects = commands.add_parser(
        "suspects",
        help="the pictures most likely to carry a wrong label, with the likelier class",
    )
    suspects.add_argument("data", nargs="?", help="dataset folder (or taken from --recipe)")
    suspects.add_argument(
        "--folds", type=int, default=5, metavar="K", help="cross-validation folds (default 5)"
    )
    suspects.add_argument("--top", type=int, metavar="N", help="show only the N most suspicious")
    suspects.add_argument("--json", action="store_true", help="machine-readable output")
    add_recipe_options(suspects)

    review = commands.add_parser(
        "review", help="a model folder's prediction for every picture of a dataset"
    )
    review.add_argument("model", help="model folder written by train")
    review.add_argument("data", help="dataset folder (one subfolder per class)")
    review.add_argument(
        "--misclassified", action="store_true", help="only the pictures the model gets wrong"
    )
    review.add_argument("--json", action="store_true", help="machine-readable output")
    return {"suspects": _cmd_suspects, "review": _cmd_review}


def _cmd_suspects(args: argparse.Namespace) -> int:
    from ..engine.errors import RecipeError
    from ..engine.review.suspects import SuspectSearch
    from ..engine.training import preflight

    if args.top is not None and args.top < 1:
        raise RecipeError(f"--top must be at least 1, got {args.top}.")
    recipe = recipe_from_args(args)
    preflight(recipe)
    report = run_cancellable(SuspectSearch(recipe, folds=args.folds), "search")
    if report is None:
        return EXIT_STOPPED
    if report.note:
        print(f"note: {report.note}", file=sys.stderr)
    shown = report.suspects[: args.top] if args.top else report.suspects
    names = report.class_names
    if args.json:
        print_json([suspect.to_dict(names) for suspect in shown])
    else:
        for suspect in shown:
            print(
                f"{suspect.score:.3f}  {names[suspect.given]} -> {names[suspect.suggested]}"
                f"  {suspect.path}"
            )
    print(
        f"{len(report.suspects)} of {report.pictures} pictures look mislabelled "
        f"({report.folds}-fold cross-validation).",
        file=sys.stderr,
    )
    return EXIT_OK


def _cmd_review(args: argparse.Namespace) -> int:
    from ..engine.export import load_model_folder
    from ..engine.review.reviewing import review_steps

    loaded = load_model_folder(args.model)
    cancel = threading.Event()
    with first_ctrl_c_calls(cancel.set, "Stopping the review"):
        review = drain_steps(review_steps(loaded, args.data, cancel), "Classifying pictures")
    if review is None:
        print("finetune-studio-cli: the review was stopped", file=sys.stderr)
        return EXIT_STOPPED
    names = loaded.class_names
    rows = []
    for record, folder in zip(review.predictions.records(), review.folder_classes):
        if args.misclassified and record.correct:
            continue
        rows.append(record.to_dict(names) | {"true": folder})
    rows.sort(key=_most_wrong_first)
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            loss = "-" if row["loss"] is None else f"{row['loss']:.3f}"
            print(
                f"{row['true']} -> {row['predicted']}  {row['confidence']:.1%}  "
                f"loss {loss}  {row['path']}"
            )
    for path in review.unreadable:
        print(f"warning: skipped {path}", file=sys.stderr)
    records = review.predictions.records()
    right = sum(record.correct for record in records)
    print(f"{right} of {len(records)} pictures classified as their folder says.", file=sys.stderr)
    return EXIT_OK


def _most_wrong_first(row: dict[str, object]) -> float:
    """By loss, highest first; pictures of classes the model does not know last."""
    loss = row["loss"]
    return math.inf if not isinstance(loss, float) else -loss
