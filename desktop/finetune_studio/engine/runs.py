"""Engine layer: every training run kept on disk, so a project reopens as it was left.

A ``RunStore`` is a folder of run folders: ``<project stem>.runs/`` beside a project
file, or a ``runs/`` folder in the app's data folder when there is no project. A
run folder, named by the run's start time and backbone, holds ``run.json`` (the
run record: recipe, metrics per epoch, final figures, start time) and ``model/``,
the same self-describing model folder an export writes (``export.save_model_folder``).

``run.json`` is written last and atomically: a folder without it is a run that was
never completed (a crash, a full disk) and is not listed. Nothing is pickled: the
record is JSON and the weights load through ``export.load_model_folder``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .atomic import write_file_atomically
from .backbones import get_spec
from .errors import UserFacingError
from .evaluation import Evaluation
from .events import EpochEnd
from .export import LoadedModel, load_model_folder, save_model_folder
from .recipe import Recipe
from .review.records import PREDICTIONS_FILE, Predictions, read_records_csv
from .training import TrainingResult

RUN_FORMAT = "finetune-studio-run"
RUN_FORMAT_VERSION = 1
RUN_FILE = "run.json"
MODEL_FOLDER = "model"
RUNS_SUFFIX = ".runs"


class RunStoreError(UserFacingError):
    """A run could not be kept, read or deleted; the message says which and why."""


def runs_folder_for(project: str | Path) -> Path:
    """``experiment.json`` keeps its runs in ``experiment.runs/`` beside it."""
    project = Path(project).expanduser().absolute()
    return project.with_name(project.stem + RUNS_SUFFIX)


@dataclass(frozen=True)
class RunRecord:
    """What a run was and how it went, read without loading its model."""

    folder: Path
    started: datetime
    recipe: Recipe
    backbone: str
    class_names: tuple[str, ...]
    history: tuple[EpochEnd, ...]
    best_epoch: int | None
    evaluation: Evaluation | None
    cancelled: bool
    stopped_early: bool

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def model_folder(self) -> Path:
        return self.folder / MODEL_FOLDER

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "format_version": RUN_FORMAT_VERSION,
            "started": self.started.isoformat(timespec="seconds"),
            "recipe": self.recipe.to_dict(),
            "backbone": self.backbone,
            "class_names": list(self.class_names),
            "history": [dataclasses.asdict(epoch) for epoch in self.history],
            "best_epoch": self.best_epoch,
            "evaluation": _evaluation_figures(self.evaluation),
            "cancelled": self.cancelled,
            "stopped_early": self.stopped_early,
        }

    @classmethod
    def from_dict(cls, folder: Path, data: dict[str, Any]) -> RunRecord:
        evaluation = data.get("evaluation")
        return cls(
            folder=folder,
            started=local_time(datetime.fromisoformat(data["started"])),
            recipe=Recipe.from_dict(data["recipe"]),
            backbone=str(data["backbone"]),
            class_names=tuple(data["class_names"]),
            history=tuple(EpochEnd(**epoch) for epoch in data["history"]),
            best_epoch=data.get("best_epoch"),
            evaluation=Evaluation(**evaluation) if evaluation else None,
            cancelled=bool(data.get("cancelled", False)),
            stopped_early=bool(data.get("stopped_early", False)),
        )

    @classmethod
    def of(cls, result: TrainingResult, folder: Path, started: datetime) -> RunRecord:
        return cls(
            folder=folder,
            started=started,
            recipe=result.recipe,
            backbone=result.spec.name,
            class_names=result.class_names,
            history=tuple(result.history),
            best_epoch=result.best_epoch,
            evaluation=result.evaluation,
            cancelled=result.cancelled,
            stopped_early=result.stopped_early,
        )


def _evaluation_figures(evaluation: Evaluation | None) -> dict[str, Any] | None:
    """The evaluation's figures for ``run.json``; its per-picture predictions live in
    the model folder's ``predictions.csv``."""
    if evaluation is None:
        return None
    return dataclasses.asdict(dataclasses.replace(evaluation, predictions=None)) | {
        "predictions": None
    }


def local_time(moment: datetime) -> datetime:
    """With its time zone (a naive time is this computer's), so runs sort by instant."""
    return moment if moment.tzinfo is not None else moment.astimezone()


def read_record(folder: Path) -> RunRecord | None:
    """The run in ``folder``, or None when it is not a complete run of ours."""
    try:
        data = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            return None
        if data.get("format_version", 0) > RUN_FORMAT_VERSION:
            return None  # a newer version's run: left alone
        return RunRecord.from_dict(folder, data)
    except (OSError, ValueError, KeyError, TypeError, UserFacingError):
        return None


def _same_folder(a: str | Path, b: str | Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


class RunStore:
    """The runs kept in one folder (created on the first save)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()

    def save(self, result: TrainingResult, started: datetime) -> RunRecord:
        """Keep a finished run: its model folder, then its record."""
        started = local_time(started)
        folder = self._claim_folder(started, result.spec.name)
        record = RunRecord.of(result, folder, started)
        try:
            save_model_folder(result, record.model_folder)
            text = json.dumps(record.to_dict(), indent=2) + "\n"
            write_file_atomically(
                folder / RUN_FILE, lambda path: path.write_text(text, encoding="utf-8")
            )
        except BaseException as error:
            shutil.rmtree(folder, ignore_errors=True)  # the folder claimed just now
            if isinstance(error, OSError):
                raise RunStoreError(
                    f"Could not keep the run in {self.root}: {error.strerror or error}."
                ) from error
            raise
        return record

    def _claim_folder(self, started: datetime, backbone: str) -> Path:
        """A new folder named by the start time; ``mkdir`` fails rather than reuse one,
        so two runs started in the same second never share a folder."""
        base = f"{started:%Y%m%d-%H%M%S}-{backbone}"
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
        try:
            folders = [f for f in self.root.iterdir() if f.is_dir() and not f.is_symlink()]
        except OSError:
            return []
        records = [r for f in folders if (r := read_record(f)) is not None]
        return sorted(records, key=lambda r: (r.started, r.id), reverse=True)

    def latest(self, dataset: str | Path | None = None) -> RunRecord | None:
        """The newest run (on ``dataset`` only, when given)."""
        for record in self.runs():
            if dataset is None or _same_folder(record.recipe.dataset, dataset):
                return record
        return None

    def load(self, record: RunRecord) -> TrainingResult:
        """The run as the Results step shows it: its model and its numbers."""
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
            evaluation=_with_predictions(record.evaluation, record.model_folder, loaded),
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
