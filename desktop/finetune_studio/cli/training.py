"""CLI layer: commands that train or measure training: train, advise."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .common import (
    EXIT_OK,
    EXIT_STOPPED,
    Commands,
    Handler,
    StderrProgress,
    first_ctrl_c_calls,
    print_json,
    print_log,
    print_stage,
    run_cancellable,
)
from .recipe_options import add_recipe_options, recipe_from_args

if TYPE_CHECKING:
    from ..engine.advice import Advice
    from ..engine.events import BatchEnd, EpochEnd, FitEnd, Log, StageProgress
    from ..engine.recipe import Recipe
    from ..engine.training.distributed import Processes


def add_commands(commands: Commands) -> dict[str, Handler]:
    train = commands.add_parser("train", help="fine-tune and write a model folder")
    train.add_argument("data", nargs="?", help="dataset folder (or taken from --recipe)")
    train.add_argument("--out", required=True, help="model folder to create")
    add_recipe_options(train)
    train.add_argument("--overwrite", action="store_true", help="replace an existing export")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last completed epoch",
    )
    train.add_argument(
        "--dist-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="under torchrun: seconds to wait for the other processes (default 300)",
    )

    advise = commands.add_parser(
        "advise", help="measure how much to unfreeze: estimated accuracy and time per plan"
    )
    advise.add_argument("data", nargs="?", help="dataset folder (or taken from --recipe)")
    advise.add_argument(
        "--budget-s", type=float, default=120.0, metavar="S", help="time to measure (seconds)"
    )
    advise.add_argument("--json", action="store_true", help="machine-readable output")
    add_recipe_options(advise)
    return {"train": _cmd_train, "advise": _cmd_advise}


def _step(event: BatchEnd | EpochEnd) -> str:
    """``epoch 3/10``, or ``iteration 3`` for a head solved to its optimum (its count
    is only a cap)."""
    if event.unit == "iteration":
        return f"iteration {event.epoch}"
    return f"epoch {event.epoch}/{event.epochs}"


class _CliListener:
    """Prints training progress to stderr; an engine ``TrainingListener``. Under
    torchrun only the first process reports; the others print just their warnings."""

    def __init__(self, reports: bool = True, rank: int = 0) -> None:
        self.tty = sys.stderr.isatty()
        self.reports, self.rank = reports, rank

    def batch_ended(self, event: BatchEnd) -> None:
        if self.tty and self.reports:
            print(
                f"\r{_step(event)}  batch {event.batch}/{event.batches}  loss {event.loss:.4f}",
                end="",
                file=sys.stderr,
                flush=True,
            )

    def epoch_ended(self, event: EpochEnd) -> None:
        if not self.reports:
            return
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
        if self.reports:
            print_stage(event)

    def log(self, event: Log) -> None:
        if self.reports:
            print_log(event)
        elif event.level != "info":
            print(f"[rank {self.rank}] {event.message}", file=sys.stderr, flush=True)

    def finished(self, event: FitEnd) -> None:
        pass

    def failed(self, error: BaseException) -> None:
        raise error


def checkpoint_path_for(out: Path) -> Path:
    """Beside the model folder, hidden; removed once the run completes."""
    return out.parent / f".{out.name}.checkpoint.pt"


def _cmd_train(args: argparse.Namespace) -> int:
    from ..engine.export import save_model_folder
    from ..engine.training import Trainer, preflight
    from ..engine.training.distributed import leave
    from ..engine.training.trainer import DECODE_BUDGET_BYTES

    recipe = recipe_from_args(args)
    preflight(recipe)
    out = Path(args.out).expanduser().absolute()
    checkpoint = checkpoint_path_for(out)
    overwrite = args.overwrite or args.resume  # a stopped run's export is replaced
    processes = _join_processes(args, recipe)
    try:
        _check_destination_first(processes, out, overwrite)  # fail before training, not after
        trainer = Trainer(
            recipe,
            scan_progress=StderrProgress("Checking pictures", every=500)
            if processes.is_main
            else None,
            # The processes on one machine divide its budget for decoded pictures.
            decode_budget_bytes=DECODE_BUDGET_BYTES // processes.on_this_machine,
            checkpoint_path=checkpoint,
            resume=args.resume,
            processes=processes,
        )
        with first_ctrl_c_calls(trainer.cancel, "Stopping after this batch"):
            result = trainer.run(_CliListener(processes.is_main, processes.rank))
    finally:
        leave(processes)  # no exchange follows; see ``leave``
    assert result is not None
    if not processes.is_main:
        return EXIT_OK  # the first process writes the run's files
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


def _join_processes(args: argparse.Namespace, recipe: Recipe) -> Processes:
    """Under torchrun, this process among the run's, once all agree on the recipe
    (the dataset's path may differ between nodes: its split is compared later)."""
    from ..engine.errors import RecipeError
    from ..engine.training.distributed import (
        ONE_PROCESS,
        join,
        launched_by_torchrun,
        leave,
        require_same,
    )

    if not launched_by_torchrun():
        return ONE_PROCESS
    if not math.isfinite(args.dist_timeout) or args.dist_timeout <= 0:
        raise RecipeError(
            f"--dist-timeout must be a positive number of seconds, got {args.dist_timeout:g}."
        )
    processes = join(recipe.device, args.dist_timeout)
    options = {key: value for key, value in recipe.to_dict().items() if key != "dataset"}
    options["resume"] = args.resume
    try:
        require_same(
            processes, options, "recipe", "Start every process with the same --recipe and options."
        )
        processes.per_process_batch(recipe.batch_size)  # a batch that cannot be shared fails
    except BaseException:
        leave(processes)
        raise
    return processes


def _check_destination_first(processes: Processes, out: Path, overwrite: bool) -> None:
    """The first process checks where the model will go; under torchrun the others
    learn its verdict and stop with it, instead of waiting to be killed."""
    from ..engine.errors import UserFacingError
    from ..engine.export import check_destination
    from ..engine.training.distributed import main_decides

    problem: UserFacingError | None = None
    if processes.is_main:
        try:
            check_destination(out, overwrite)
        except UserFacingError as error:
            problem = error
    if not main_decides(processes, problem is None):
        raise problem or UserFacingError(
            f"Process 0 cannot write the model to {out}: see its message."
        )


def _cmd_advise(args: argparse.Namespace) -> int:
    from ..engine.advice import Advisor
    from ..engine.errors import RecipeError
    from ..engine.training import preflight

    if args.freeze is not None:
        raise RecipeError("advise measures every freeze plan: leave out --freeze.")
    recipe = recipe_from_args(args)
    preflight(recipe)
    if not math.isfinite(args.budget_s) or args.budget_s <= 0:
        raise RecipeError(
            f"--budget-s must be a positive number of seconds, got {args.budget_s:g}."
        )
    advice = run_cancellable(Advisor(recipe, budget_s=args.budget_s), "measurement")
    if advice is None:
        return EXIT_STOPPED
    if args.json:
        print_json(advice.to_dict())
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
