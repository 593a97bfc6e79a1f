"""Engine layer: every training run kept on disk, so a project reopens as it was left.

A ``RunStore`` is a folder of run folders: ``<project stem>.runs/`` beside a project
file, or a ``runs/`` folder in the app's data folder when there is no project. A
run folder, named by the run's start time and backbone, holds ``run.json`` (the
run record: recipe, metrics per epoch, final figures, start time) and ``model/``,
the same self-describing model folder an export writes (``export.save_model_folder``).

``run.json`` is written last and atomically: a folder without it is a run that was
never completed (a crash, a full disk) and is not listed (``listing`` says so in a
note). Nothing is pickled: the record is JSON and the weights load through
``export.load_model_folder``. A run that failed is kept too, as a record with its
recipe, the epochs it finished and its error, and no model folder.

Listing reads ``run.json`` files only, never a model, so hundreds of runs list fast.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .atomic import write_file_atomically
from .backbones import get_spec
from .errors import UserFacingError
from .evaluation import Evaluation
from .events import EpochEnd
from .export import LoadedModel, load_model_folder, save_model_folder
from .recipe import Recipe
from .review.records import PREDICTIONS_FILE, Predictions, read_records_csv
from .run_record import (
    MODEL_FOLDER,
    RUN_FILE,
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    RunRecord,
    local_time,
    seconds_since,
)
from .training import TrainingResult

__all__ = [
    "MODEL_FOLDER",
    "RUN_FILE",
    "RunListing",
    "RunRecord",
    "RunStore",
    "RunStoreError",
    "SkippedRun",
    "runs_folder_for",
]

RUNS_SUFFIX = ".runs"


class RunStoreError(UserFacingError):
    """A run could not be kept, read or deleted; the message says which and why."""


def runs_folder_for(project: str | Path) -> Path:
    """``experiment.json`` keeps its runs in ``experiment.runs/`` beside it."""
    project = Path(project).expanduser().absolute()
    return project.with_name(project.stem + RUNS_SUFFIX)


def read_record(folder: Path) -> RunRecord | None:
    """The run in ``folder``, or None when it is not a complete run of ours."""
    record = read_record_or_reason(folder)
    return record if isinstance(record, RunRecord) else None


def read_record_or_reason(folder: Path) -> RunRecord | str:
    """The run in ``folder``, or why it is not listed, in words."""
    try:
        text = (folder / RUN_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"no {RUN_FILE} (a run that never finished saving, or not a run)"
    except (OSError, UnicodeDecodeError) as error:
        return f"{RUN_FILE} could not be read ({getattr(error, 'strerror', None) or error})"
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            return f"{RUN_FILE} is not a Finetune Studio run"
        if data.get("format_version", 0) > RUN_FORMAT_VERSION:
            return "kept by a newer version of Finetune Studio"  # left alone
        return RunRecord.from_dict(folder, data)
    except json.JSONDecodeError as error:
        return f"{RUN_FILE} is damaged (not valid JSON: {error.msg}, line {error.lineno})"
    except (ValueError, KeyError, TypeError, UserFacingError) as error:
        return f"{RUN_FILE} is damaged ({type(error).__name__}: {error})"


@dataclass(frozen=True)
class SkippedRun:
    """A folder in the store that is not listed, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class RunListing:
    """Every complete run of a store, newest first, and the folders skipped."""

    records: tuple[RunRecord, ...]
    skipped: tuple[SkippedRun, ...] = ()


def _same_folder(a: str | Path, b: str | Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


class RunStore:
    """The runs kept in one folder (created on the first save)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()

    def save(
        self, result: TrainingResult, started: datetime, seconds: float | None = None
    ) -> RunRecord:
        """Keep a finished run: its model folder, then its record. ``seconds``: how
        long it took, when known (a run kept again later, say into a project saved
        hours after, must not count the hours); by default, from ``started`` to now."""
        started = local_time(started)
        folder = self._claim_folder(started, result.spec.name)
        seconds = seconds_since(started) if seconds is None else seconds
        record = RunRecord.of(result, folder, started, seconds)
        try:
            save_model_folder(result, record.model_folder)
        except BaseException as error:
            shutil.rmtree(folder, ignore_errors=True)  # the folder claimed just now
            if isinstance(error, OSError):
                raise RunStoreError(
                    f"Could not keep the run in {self.root}: {error.strerror or error}."
                ) from error
            raise
        self._write_record(record)
        return record

    def save_failed(
        self, recipe: Recipe, history: Sequence[EpochEnd], started: datetime, failure: str
    ) -> RunRecord:
        """Keep a run that failed: its recipe, the epochs it finished and its error
        (there is no model to keep)."""
        started = local_time(started)
        folder = self._claim_folder(started, recipe.backbone)
        record = RunRecord(
            folder, started, recipe, recipe.backbone, (), tuple(history),
            None, None, cancelled=False, stopped_early=False, failure=failure,
            seconds=seconds_since(started),
        )  # fmt: skip
        self._write_record(record)
        return record

    def _write_record(self, record: RunRecord) -> None:
        """``run.json``, atomically; a failure removes the run folder claimed for it."""
        text = json.dumps(record.to_dict(), indent=2) + "\n"
        try:
            write_file_atomically(
                record.folder / RUN_FILE, lambda path: path.write_text(text, encoding="utf-8")
            )
        except BaseException as error:
            shutil.rmtree(record.folder, ignore_errors=True)
            if isinstance(error, OSError):
                raise RunStoreError(
                    f"Could not keep the run in {self.root}: {error.strerror or error}."
                ) from error
            raise

    def _claim_folder(self, started: datetime, backbone: str) -> Path:
        """A new folder named by the start time; ``mkdir`` fails rather than reuse one,
        so two runs started in the same second never share a folder."""
        in_name = re.sub(r"[^\w.-]+", "-", backbone)  # timm's hold a slash: timm/resnet18
        base = f"{started:%Y%m%d-%H%M%S}-{in_name}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for number in range(1, 1000):
                folder = self.root / (base if number == 1 else f"{base}-{number}")
                with contextlib.suppress(FileExistsError):
                    folder.mkdir()
                    return folder
        except OSError as error:
            raise RunStoreError(
                f"Could not keep the run in {self.root}: {error.strerror or error}."
            ) from error
        raise RunStoreError(f"Too many runs named {base} in {self.root}.")

    def runs(self) -> list[RunRecord]:
        """Every complete run here, the newest first."""
        return list(self.listing().records)

    def listing(self) -> RunListing:
        """Every complete run here, the newest first, and the folders that are not
        (no ``run.json``, a damaged one, another version's), each with its reason."""
        try:
            folders = [f for f in self.root.iterdir() if f.is_dir() and not f.is_symlink()]
        except OSError:
            return RunListing(())
        records: list[RunRecord] = []
        skipped: list[SkippedRun] = []
        for folder in sorted(folders):
            read = read_record_or_reason(folder)
            if isinstance(read, RunRecord):
                records.append(read)
            else:
                skipped.append(SkippedRun(folder.name, read))
        records.sort(key=lambda r: (r.started, r.id), reverse=True)
        return RunListing(tuple(records), tuple(skipped))

    def latest(self, dataset: str | Path | None = None) -> RunRecord | None:
        """The newest run with a model (on ``dataset`` only, when given)."""
        for record in self.runs():
            if not record.has_model:
                continue  # a failed run: nothing to reopen
            if dataset is None or _same_folder(record.recipe.dataset, dataset):
                return record
        return None

    def load(self, record: RunRecord) -> TrainingResult:
        """The run as the Results step shows it: its model and its numbers."""
        if not record.has_model:
            raise RunStoreError(
                f"The run {record.id} failed before it had a model: there is nothing to "
                "open or export. Run it again to train one."
            )
        loaded = load_model_folder(record.model_folder)
        return TrainingResult(
            model=loaded.model,
            spec=get_spec(str(loaded.metadata["backbone"])),
            head_path=str(loaded.metadata["head"]),
            class_names=loaded.class_names,
            preprocessing=loaded.preprocessing,
            recipe=record.recipe,
            history=list(record.history),
            best_epoch=record.best_epoch,
            evaluation=_with_predictions(
                _with_confusion(record.evaluation, loaded), record.model_folder, loaded
            ),
            cancelled=record.cancelled,
            stopped_early=record.stopped_early,
            calibration=loaded.calibration,
        )

    def delete(self, run_id: str) -> None:
        """Remove one run folder of this store, and nothing else: not a path outside
        it, not a link (whose target would be someone else's), not a folder that is no
        run of ours. Callers ask the user first."""
        folder = self.root / run_id
        if (
            Path(run_id).name != run_id
            or run_id in ("", ".", "..")
            or folder.is_symlink()
            or folder.resolve().parent != self.root.resolve()
            or read_record(folder) is None
        ):
            raise RunStoreError(f"{run_id!r} is not a run in {self.root}; nothing was deleted.")
        try:
            shutil.rmtree(folder)  # links inside are removed, never followed
        except OSError as error:
            raise RunStoreError(
                f"Could not delete the run {run_id}: {error.strerror or error}."
            ) from error


def _with_confusion(evaluation: Evaluation | None, loaded: LoadedModel) -> Evaluation | None:
    """The evaluation with its confusion matrix from the model folder's ``model.json``
    (``_figures_only``)."""
    if evaluation is None or evaluation.confusion:
        return evaluation
    metrics = loaded.metadata.get("metrics")
    confusion = metrics.get("confusion") if isinstance(metrics, dict) else None
    if not isinstance(confusion, list):
        return evaluation
    return dataclasses.replace(evaluation, confusion=[[int(n) for n in row] for row in confusion])


def _with_predictions(
    evaluation: Evaluation | None, model_folder: Path, loaded: LoadedModel
) -> Evaluation | None:
    """The evaluation with its per-picture predictions read back, where the run kept
    them (runs from before they were kept have none)."""
    csv_file = model_folder / PREDICTIONS_FILE
    if evaluation is None or not csv_file.is_file():
        return evaluation
    try:
        records = read_records_csv(csv_file, loaded.class_names)
    except (OSError, UnicodeDecodeError, csv.Error):
        return evaluation
    predictions = Predictions.of(records, len(loaded.class_names))
    return dataclasses.replace(evaluation, predictions=predictions)
