"""finetune-studio-cli: the engine from the command line; never imports Qt.

Exit codes: 0 success, 2 bad input or arguments (one line on stderr), 1 internal
error (a bug: the traceback follows the one-line summary).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # at run time each command imports the engine modules it needs
    from .engine.advice import Advice
    from .engine.events import BatchEnd, EpochEnd, FitEnd, Log, StageProgress
    from .engine.recipe import Recipe

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="finetune-studio-cli",
        description="Fine-tune pretrained image "
        "classifiers on a folder of pictures (one subfolder per class).",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    inspect = commands.add_parser("inspect", help="classes, counts, split and skipped files")
    inspect.add_argument("data", help="dataset folder")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument("--val-split", type=float, default=0.2)
    inspect.add_argument("--seed", type=int, default=0)

    backbones = commands.add_parser("backbones", help="list the available backbones")
    backbones.add_argument("--json", action="store_true")

    train = commands.add_parser("train", help="fine-tune and write a model folder")
    train.add_argument("data", nargs="?", help="dataset folder (or taken from --recipe)")
    train.add_argument("--out", required=True, help="model folder to create")
    _add_recipe_options(train)
    train.add_argument("--overwrite", action="store_true", help="replace an existing export")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last completed epoch",
    )

    advise = commands.add_parser(
        "advise", help="measure how much to unfreeze: estimated accuracy and time per plan"
    )
    advise.add_argument("data", nargs="?", help="dataset folder (or taken from --recipe)")
    advise.add_argument(
        "--budget-s", type=float, default=120.0, metavar="S", help="time to measure (seconds)"
    )
    advise.add_argument("--json", action="store_true", help="machine-readable output")
    _add_recipe_options(advise)

    predict = commands.add_parser("predict", help="classify pictures with a model folder")
    predict.add_argument("model", help="model folder written by train")
    predict.add_argument("paths", nargs="+", help="pictures or folders of pictures")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true")

    sample = commands.add_parser("sample", help="draw a small practice dataset of shapes")
    sample.add_argument("folder", help="new folder to create")
    sample.add_argument("--per-class", type=int, default=60)
    sample.add_argument("--seed", type=int, default=0)

    export = commands.add_parser("export", help="write TorchScript or ONNX, verified")
    export.add_argument("model", help="model folder written by train")
    export.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    export.add_argument("--out", help="file to write (default: inside the model folder)")
    export.add_argument("--overwrite", action="store_true")
    return parser


def _add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """The recipe's options, shared by the commands that train or measure training."""
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


def _print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


class _StderrProgress:
    """One updating line on a terminal; a line per step of ``every`` otherwise."""

    def __init__(self, label: str, every: int = 0) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.every = every

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            end = "\n" if done >= total else ""
            print(f"\r{self.label}: {done}/{total}", end=end, file=sys.stderr, flush=True)
        elif done == total or (self.every and done and done % self.every == 0):
            print(f"{self.label}: {done}/{total}", file=sys.stderr, flush=True)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .engine.inspection import inspect_dataset

    report = inspect_dataset(
        args.data,
        args.val_split,
        args.seed,
        None if args.json else _StderrProgress("Checking pictures"),
    )
    if args.json:
        _print_json(report.to_dict())
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
    from .engine.backbones import backbone_infos

    infos = backbone_infos()
    if args.json:
        _print_json([info.to_dict() for info in infos])
        return EXIT_OK
    print(f"{'name':<24} {'family':<20} {'params':>8} {'top-1':>6} {'input':>5}  weights")
    for info in infos:
        top1 = f"{info.imagenet_top1:.1f}" if info.imagenet_top1 is not None else "-"
        size = f" ({info.weights_size_mb:.0f} MB)" if info.weights == "download" else ""
        mark = "  (default)" if info.default else ""
        print(
            f"{info.name:<24} {info.family:<20} {info.num_params / 1e6:7.1f}M {top1:>6} "
            f"{info.input_size:>5}  {info.weights}{size}{mark}"
        )
    return EXIT_OK


def _recipe_from_args(args: argparse.Namespace) -> Recipe:
    from .engine.errors import RecipeError
    from .engine.freezing import FreezePlan, GradualUnfreeze
    from .engine.recipe import Recipe

    base = Recipe.load(args.recipe) if args.recipe else None
    dataset = args.data or (base.dataset if base else None)
    if not dataset:
        raise RecipeError("Give a dataset folder (or a --recipe that names one).")
    # Recipe fields of many types, passed on as Recipe.replace and Recipe() take them.
    changes: dict[str, Any] = {"dataset": str(Path(dataset).expanduser())}
    for option, field in (
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
    ):
        value = getattr(args, option)
        if value is not None:
            changes[field] = value
    if args.freeze is not None:
        changes["freeze"] = FreezePlan(args.freeze)
    if args.unfreeze_after is not None:
        changes["gradual_unfreeze"] = GradualUnfreeze(args.unfreeze_after)
    if args.augmented_copies is not None:
        changes["cached_views"] = 1 + args.augmented_copies
    return base.replace(**changes) if base else Recipe(**changes)


def _step(event: BatchEnd | EpochEnd) -> str:
    """``epoch 3/10``, or ``iteration 3`` for a head solved to its optimum (its count
    is only a cap)."""
    if event.unit == "iteration":
        return f"iteration {event.epoch}"
    return f"epoch {event.epoch}/{event.epochs}"


class _CliListener:
    """Prints training progress to stderr; an engine ``TrainingListener``."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def batch_ended(self, event: BatchEnd) -> None:
        if self.tty:
            print(
                f"\r{_step(event)}  batch {event.batch}/{event.batches}  loss {event.loss:.4f}",
                end="",
                file=sys.stderr,
                flush=True,
            )

    def epoch_ended(self, event: EpochEnd) -> None:
        val = (
            f"val_loss {event.val_loss:.4f}  val_acc {event.val_acc:.2%}"
            if event.val_loss is not None
            else "no validation set"
        )
        prefix = "\r" if self.tty else ""
        print(
            f"{prefix}{_step(event)}  train_loss {event.train_loss:.4f}  "
            f"train_acc {event.train_acc:.2%}  {val}  {event.seconds:.1f}s"
            f"{'  *best' if event.is_best else ''}",
            file=sys.stderr,
            flush=True,
        )

    def stage_progressed(self, event: StageProgress) -> None:
        _StderrProgress(event.stage)(event.done, event.total)

    def log(self, event: Log) -> None:
        prefix = "warning: " if event.level == "warning" else ""
        print(f"{prefix}{event.message}", file=sys.stderr, flush=True)

    def finished(self, event: FitEnd) -> None:
        pass

    def failed(self, error: BaseException) -> None:
        raise error


def checkpoint_path_for(out: Path) -> Path:
    """Beside the model folder, hidden; removed once the run completes."""
    return out.parent / f".{out.name}.checkpoint.pt"


def _cmd_train(args: argparse.Namespace) -> int:
    from .engine.export import check_destination, save_model_folder
    from .engine.training import Trainer, preflight

    recipe = _recipe_from_args(args)
    preflight(recipe)
    out = Path(args.out).expanduser().absolute()
    checkpoint = checkpoint_path_for(out)
    overwrite = args.overwrite or args.resume  # a stopped run's export is replaced
    check_destination(out, overwrite)  # fail before training, not after
    trainer = Trainer(
        recipe,
        scan_progress=_StderrProgress("Checking pictures", every=500),
        checkpoint_path=checkpoint,
        resume=args.resume,
    )

    with _first_ctrl_c_calls(trainer.cancel, "Stopping after this batch"):
        result = trainer.run(_CliListener())
    assert result is not None
    folder = save_model_folder(result, out, overwrite)
    if not result.cancelled:
        checkpoint.unlink(missing_ok=True)  # kept after Ctrl-C, for --resume
    final = result.evaluation
    accuracy = f"validation accuracy {final.accuracy:.2%}, " if final and final.images else ""
    print(
        f"Saved the model ({accuracy}best {result.unit} {result.best_epoch}) to {folder}",
        file=sys.stderr,
    )
    return EXIT_OK


@contextlib.contextmanager
def _first_ctrl_c_calls(cancel: Callable[[], None], saying: str) -> Iterator[None]:
    """The first Ctrl-C asks the work to stop cleanly; a second one interrupts."""

    def stop(signum: int, frame: FrameType | None) -> None:
        print(f"\n{saying} (Ctrl-C again to abort)...", file=sys.stderr)
        cancel()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _cmd_advise(args: argparse.Namespace) -> int:
    from .engine.advice import Advisor
    from .engine.errors import RecipeError
    from .engine.events import Log, StageProgress
    from .engine.training import preflight

    if args.freeze is not None:
        raise RecipeError("advise measures every freeze plan: leave out --freeze.")
    recipe = _recipe_from_args(args)
    preflight(recipe)
    if not math.isfinite(args.budget_s) or args.budget_s <= 0:
        from .engine.errors import RecipeError

        raise RecipeError(
            f"--budget-s must be a positive number of seconds, got {args.budget_s:g}."
        )
    advisor = Advisor(recipe, budget_s=args.budget_s)
    listener = _CliListener()
    events = advisor.events()
    with _first_ctrl_c_calls(advisor.cancel, "Stopping the measurement"):
        while True:
            try:
                event = next(events)
            except StopIteration as finished:
                advice = finished.value
                break
            if isinstance(event, StageProgress):
                listener.stage_progressed(event)
            elif isinstance(event, Log):
                listener.log(event)
    if advice is None:
        print("finetune-studio-cli: the measurement was stopped", file=sys.stderr)
        return 130
    if args.json:
        _print_json(advice.to_dict())
        return EXIT_OK
    print(_advice_table(advice))
    return EXIT_OK


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _advice_table(advice: Advice) -> str:
    lines = [
        f"How much to unfreeze {advice.backbone}: estimates measured on "
        f"{advice.sample_train} training and {advice.sample_val} validation pictures "
        f"in {_duration(advice.seconds)}.",
        "",
        f"  {'plan':<8} {'accuracy':>9} {'time':>12}  how it was measured",
    ]
    for plan in advice.plans:
        accuracy = "-" if plan.estimated_accuracy is None else f"{plan.estimated_accuracy:.1%}"
        mark = "  <- recommended" if plan.freeze == advice.recommended_freeze else ""
        lines.append(
            f"  {plan.freeze:<8} {accuracy:>9} {_duration(plan.estimated_seconds):>12}  "
            f"{plan.note}{mark}"
        )
    lines += ["", f"Recommended: --freeze {advice.recommended_freeze}"]
    return "\n".join(lines)


def _cmd_predict(args: argparse.Namespace) -> int:
    from .engine.errors import UserFacingError
    from .engine.export import load_model_folder
    from .engine.predict import Predictor, expand_paths

    loaded = load_model_folder(args.model)
    paths = expand_paths(args.paths)
    if not paths:
        raise UserFacingError("No pictures found in the given paths.")
    predictions = Predictor(loaded.model, loaded.class_names, loaded.preprocessing).predict(
        paths, args.top_k
    )
    if args.json:
        _print_json([p.to_dict() for p in predictions])
    else:
        for prediction in predictions:
            if prediction.error:
                print(f"{prediction.path}: skipped ({prediction.error})")
                continue
            ranked = ", ".join(f"{name} {prob:.1%}" for name, prob in prediction.top)
            print(f"{prediction.path}: {ranked}")
    return EXIT_BAD_INPUT if all(p.error for p in predictions) else EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from .engine.export import FORMAT_FILES, export_onnx, export_torchscript, load_model_folder

    loaded = load_model_folder(args.model)
    out = Path(args.out) if args.out else Path(args.model) / FORMAT_FILES[args.format]
    exporter = export_onnx if args.format == "onnx" else export_torchscript
    difference = exporter(loaded, out, overwrite=args.overwrite)
    print(f"Wrote {out} (checked: max probability difference {difference:.1e})", file=sys.stderr)
    return EXIT_OK


def _cmd_sample(args: argparse.Namespace) -> int:
    from .engine.sample_data import generate_sample_dataset

    folder = generate_sample_dataset(
        args.folder,
        args.per_class,
        seed=args.seed,
        progress=_StderrProgress("Drawing pictures", every=100),
    )
    print(f"Wrote a sample dataset to {folder}", file=sys.stderr)
    return EXIT_OK


_COMMANDS = {
    "inspect": _cmd_inspect,
    "backbones": _cmd_backbones,
    "train": _cmd_train,
    "advise": _cmd_advise,
    "predict": _cmd_predict,
    "export": _cmd_export,
    "sample": _cmd_sample,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    from .engine.errors import UserFacingError

    try:
        return _COMMANDS[args.command](args)
    except UserFacingError as error:
        print(f"finetune-studio-cli: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps interpreter shutdown quiet
        return EXIT_OK
    except KeyboardInterrupt:
        print("finetune-studio-cli: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the boundary: anything else is our bug
        print(f"finetune-studio-cli: internal error: {error!r}", file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
