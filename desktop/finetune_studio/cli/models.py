"""CLI layer: commands that use a trained model folder: predict, export."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .common import EXIT_BAD_INPUT, EXIT_OK, Commands, Handler, print_json


def add_commands(commands: Commands) -> dict[str, Handler]:
    predict = commands.add_parser("predict", help="classify pictures with a model folder")
    predict.add_argument("model", help="model folder written by train")
    predict.add_argument("paths", nargs="+", help="pictures or folders of pictures")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument(
        "--threshold",
        type=probability,
        metavar="P",
        help="answer 'unknown' below this calibrated probability, 0 to 1 "
        "(default: the model's own, stored in model.json)",
    )
    predict.add_argument("--json", action="store_true")

    export = commands.add_parser(
        "export", help="write pt2, ONNX, ONNX int8, TorchScript or ExecuTorch, checked and measured"
    )
    export.add_argument("model", help="model folder written by train")
    export.add_argument(
        "--format",
        required=True,
        choices=("pt2", "onnx", "onnx-int8", "torchscript", "executorch"),
        help="executorch needs the executorch extra",
    )
    export.add_argument("--out", help="file to write (default: inside the model folder)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing file")
    export.add_argument("--json", action="store_true", help="print the figures as JSON")
    return {"predict": _cmd_predict, "export": _cmd_export}


def probability(text: str) -> float:
    """``--threshold``: a number from 0 to 1 (NaN is none), else bad input (exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability from 0 to 1, not {text!r}")
    return value


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..engine.errors import UserFacingError
    from ..engine.export import load_model_folder
    from ..engine.predict import Predictor, expand_paths

    loaded = load_model_folder(args.model)
    paths = expand_paths(args.paths)
    if not paths:
        raise UserFacingError("No pictures found in the given paths.")
    predictor = Predictor(
        loaded.model, loaded.class_names, loaded.preprocessing, calibration=loaded.calibration
    )
    predictions = predictor.predict(paths, args.top_k, threshold=args.threshold)
    if args.json:
        print_json([p.to_dict() for p in predictions])
    else:
        for prediction in predictions:
            if prediction.error:
                print(f"{prediction.path}: skipped ({prediction.error})")
                continue
            ranked = ", ".join(f"{name} {prob:.1%}" for name, prob in prediction.top)
            print(f"{prediction.path}: {prediction.answer}  ({ranked})")
    return EXIT_BAD_INPUT if all(p.error for p in predictions) else EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    """Export, check and measure; the figures go to stdout (a table, or JSON as
    model.json records them), what was written to stderr."""
    from ..engine.export import export_into_folder, load_model_folder
    from ..engine.export.checker import figures_table
    from ..engine.export.model_exports import exports_record

    folder = Path(args.model)
    loaded = load_model_folder(folder)
    out = Path(args.out) if args.out else None
    rows = export_into_folder(folder, loaded, args.format, out, args.overwrite)
    print(f"Wrote {folder / rows[-1].file}, checked against the model.", file=sys.stderr)
    if args.json:
        print_json(exports_record(rows))
    else:
        print(figures_table(rows))
    return EXIT_OK
