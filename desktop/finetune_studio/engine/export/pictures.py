"""Engine layer: the real pictures an export is checked and calibrated with.

Every format is compared with the PyTorch model on the run's validation pictures: a
freshly trained result knows them (its evaluation's records), a model folder lists
them in ``predictions.csv``, and a folder without one finds them again by re-inspecting
its recipe's dataset with the recipe's own split. ONNX int8 calibrates its ranges on
a stratified sample of the training pictures, which only the dataset can give.

The samples are capped (``CHECK_PICTURES``, ``CALIBRATION_PICTURES``) so an export
stays quick on a large dataset; every class keeps its share.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from ..errors import ExportError, UserFacingError
from ..images import ImageProblem, load_for_model
from ..inspection import DatasetReport, Sample, inspect_dataset
from ..preprocessing import Preprocessing, eval_transform
from ..recipe import Recipe
from ..review.records import PREDICTIONS_FILE, read_records_csv
from ..training import TrainingResult
from .common import LoadedModel, sample_batch

CHECK_PICTURES = 200
CALIBRATION_PICTURES = 100


@dataclass(frozen=True)
class CheckPictures:
    """Preprocessed pictures (``images``, one row each) and their true classes (-1 where
    the model does not know the class). ``source`` says which pictures they are."""

    images: torch.Tensor
    labels: tuple[int, ...]
    source: str  # "validation", "training" or "synthetic"

    def __len__(self) -> int:
        return len(self.labels)


def stratified(samples: Sequence[Sample], limit: int, seed: int = 0) -> list[Sample]:
    """At most ``limit`` samples, classes taken in turn (each shuffled by ``seed``), so a
    cap keeps every class rather than the first ones on disk."""
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample.label, []).append(sample)
    rng = random.Random(seed)
    queues = [rng.sample(group, len(group)) for _, group in sorted(by_class.items())]
    chosen: list[Sample] = []
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop())
    return chosen


def load_pictures(
    samples: Sequence[Sample], preprocessing: Preprocessing, source: str = "validation"
) -> CheckPictures:
    """Decode and preprocess as every prediction does; unreadable pictures are left out."""
    transform = eval_transform(preprocessing)
    tensors: list[torch.Tensor] = []
    labels: list[int] = []
    for sample in samples:
        try:
            image = load_for_model(
                sample.path, preprocessing.resize_size, preprocessing.interpolation
            )
        except (ImageProblem, OSError):
            continue
        tensors.append(transform(image))
        labels.append(sample.label)
    if not tensors:
        return CheckPictures(sample_batch(preprocessing), (-1,) * 4, "synthetic")
    return CheckPictures(torch.stack(tensors), tuple(labels), source)


class PictureSource:
    """Where one model's exports find their pictures; each set is loaded once and
    shared by every format exported in the same go. ``listed`` gives the validation
    pictures when they are known without reading the dataset."""

    def __init__(
        self,
        loaded: LoadedModel,
        recipe: Recipe | None,
        listed: Callable[[], list[Sample]] | None = None,
    ) -> None:
        self.preprocessing = loaded.preprocessing
        self.class_names = loaded.class_names
        self.recipe = recipe
        self._listed = listed

    @classmethod
    def of_model(cls, loaded: LoadedModel) -> PictureSource:
        """Only the recipe's dataset, split again as it was for training."""
        return cls(loaded, recipe_of(loaded))

    @classmethod
    def of_result(cls, loaded: LoadedModel, result: TrainingResult) -> PictureSource:
        """A training result's own validation pictures (its evaluation's records)."""
        predictions = result.evaluation.predictions if result.evaluation else None

        def listed() -> list[Sample]:
            if predictions is None:
                return []
            return [Sample(p, int(t)) for p, t in zip(predictions.paths, predictions.true)]

        return cls(loaded, result.recipe, listed)

    @classmethod
    def of_folder(cls, folder: Path, loaded: LoadedModel) -> PictureSource:
        """A model folder's validation pictures, as its ``predictions.csv`` lists them."""

        def listed() -> list[Sample]:
            table = folder / PREDICTIONS_FILE
            if not table.is_file():
                return []
            return [Sample(r.path, r.true) for r in read_records_csv(table, loaded.class_names)]

        return cls(loaded, recipe_of(loaded), listed)

    @cached_property
    def report(self) -> DatasetReport:
        if self.recipe is None:
            raise ExportError("The model folder does not say which dataset trained it.")
        return _report(self.recipe, self.class_names)

    def _dataset_samples(self, part: str) -> list[Sample]:
        try:
            return list(self.report.val if part == "validation" else self.report.train)
        except UserFacingError:
            return []

    @cached_property
    def check_pictures(self) -> CheckPictures:
        """The validation pictures (capped); without any, a sample of the training
        pictures; without a dataset either, fixed synthetic inputs."""
        samples = self._listed() if self._listed is not None else []
        source = "validation"
        if not samples:
            samples = self._dataset_samples(source)
        if not samples:
            source = "training"
            samples = self._dataset_samples(source)
        return load_pictures(stratified(samples, CHECK_PICTURES), self.preprocessing, source)

    @cached_property
    def calibration_pictures(self) -> torch.Tensor:
        """A stratified sample of the training pictures, for int8's activation ranges."""
        try:
            training = self.report.train
        except UserFacingError as exc:
            raise ExportError(
                f"ONNX int8 needs the training pictures to calibrate on. {exc} Put the "
                "dataset back where it was trained, or export ONNX (float) instead."
            ) from exc
        pictures = load_pictures(stratified(training, CALIBRATION_PICTURES), self.preprocessing)
        if pictures.source == "synthetic":
            raise ExportError(
                f"ONNX int8 needs the training pictures to calibrate on, and none in "
                f"{self.report.root} could be read. Export ONNX (float) instead."
            )
        return pictures.images


def recipe_of(loaded: LoadedModel) -> Recipe | None:
    try:
        return Recipe.from_dict(loaded.metadata["recipe"])
    except (KeyError, TypeError, ValueError, UserFacingError):
        return None


def _report(recipe: Recipe, class_names: Sequence[str]) -> DatasetReport:
    """The recipe's dataset split as training split it; its classes must be the model's."""
    if not Path(recipe.dataset).is_dir():
        raise ExportError(f"The dataset {recipe.dataset} is gone.")
    report = inspect_dataset(recipe.dataset, recipe.val_fraction, recipe.seed)
    if report.classes != tuple(class_names):
        raise ExportError(f"The dataset {recipe.dataset} no longer has the model's classes.")
    return report
