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

    export = commands.add_parser("export", help="write TorchScript or ONNX, verified")
    export.add_argument("model", help="model folder written by train")
    export.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    export.add_argument("--out", help="file to write (default: inside the model folder)")
    export.add_argument("--overwrite", action="store_true")
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
    from ..engine.export import FORMAT_FILES, export_onnx, export_torchscript, load_model_folder

    loaded = load_model_folder(args.model)
    out = Path(args.out) if args.out else Path(args.model) / FORMAT_FILES[args.format]
    exporter = export_onnx if args.format == "onnx" else export_torchscript
    difference = exporter(loaded, out, overwrite=args.overwrite)
    print(f"Wrote {out} (checked: max probability difference {difference:.1e})", file=sys.stderr)
    return EXIT_OK
