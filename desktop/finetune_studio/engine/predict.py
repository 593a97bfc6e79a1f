"""Engine layer: class probabilities for pictures, from any trained model.

Probabilities are calibrated (``softmax(logits / T)`` with the model's fitted
temperature, see ``calibration``), and each prediction's answer is its top class or
"unknown" below the confidence threshold. A folder of thousands of pictures takes
minutes on a CPU, so ``Predictor.predict`` reports progress and can be cancelled
between pictures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .calibration import Calibration, answer, check_threshold
from .images import ImageProblem, is_candidate_image, load_for_model
from .preprocessing import Preprocessing, eval_transform
from .scan import walk_files


@dataclass(frozen=True)
class Prediction:
    """One picture's answer. ``top`` holds calibrated probabilities, best first;
    ``answer`` is ``top``'s first class, or ``UNKNOWN`` when ``confidence`` (its
    probability) is below the threshold; both are None for a picture that could not
    be read (``error`` says why)."""

    path: str
    top: tuple[tuple[str, float], ...]  # (class name, probability), best first
    error: str | None = None
    answer: str | None = None
    confidence: float | None = None

    @classmethod
    def of(cls, path: str, top: tuple[tuple[str, float], ...], threshold: float) -> Prediction:
        best, confidence = top[0]
        return cls(path, top, None, answer(best, confidence, threshold), confidence)

    def with_threshold(self, threshold: float) -> Prediction:
        """The same probabilities, answered at another threshold (no model needed)."""
        if self.error or not self.top:
            return self
        return replace(self, answer=answer(self.top[0][0], self.top[0][1], threshold))

    def to_dict(self) -> dict[str, object]:
        """The public form (the CLI's ``predict --json``): ``{"path", "class",
        "confidence", "top": [{"class", "probability"}, ...]}``, plus ``"error"`` (with
        ``class`` and ``confidence`` null and ``top`` empty) for an unreadable picture."""
        item: dict[str, object] = {
            "path": self.path,
            "class": self.answer,
            "confidence": self.confidence,
            "top": [{"class": c, "probability": p} for c, p in self.top],
        }
        if self.error:
            item["error"] = self.error
        return item


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders become the pictures below them, in a stable order."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [p for p in walk_files(path) if is_candidate_image(p)]
        else:
            found.append(path)
    return found


class Predictor:
    def __init__(
        self,
        model: nn.Module,
        class_names: Sequence[str],
        preprocessing: Preprocessing,
        device: torch.device | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self.model = model.eval()
        self.calibration = calibration or Calibration()
        self.class_names = tuple(class_names)
        self.preprocessing = preprocessing
        self.transform = eval_transform(preprocessing)
        self.device = device or torch.device("cpu")

    def tensor_for(self, path: str | Path) -> torch.Tensor:
        pre = self.preprocessing
        image = load_for_model(path, pre.resize_size, pre.interpolation)
        tensor: torch.Tensor = self.transform(image)
        return tensor

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Calibrated: ``softmax(logits / T)``, which keeps every picture's ranking."""
        self.model.to(self.device)
        logits = self.model(batch.to(self.device)).float()
        return torch.softmax(logits / self.calibration.temperature, dim=1).cpu()

    def predict(
        self,
        paths: Iterable[str | Path],
        top_k: int = 3,
        batch_size: int = 16,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        threshold: float | None = None,
    ) -> list[Prediction]:
        """One prediction per path, in order. ``progress(done, total)`` follows each
        batch of pictures. Once ``cancel`` is set no further picture is read, and the
        predictions of the pictures read so far are returned (a prefix of the paths).
        ``threshold`` replaces the calibration's own (``ValueError`` outside [0, 1])."""
        threshold = check_threshold(self.calibration.threshold if threshold is None else threshold)
        top_k = max(1, min(top_k, len(self.class_names)))
        results: dict[int, Prediction] = {}
        pending: list[tuple[int, str, torch.Tensor]] = []
        all_paths = [str(p) for p in paths]

        def flush() -> None:
            if not pending:
                return
            probs = self.probabilities(torch.stack([t for _, _, t in pending]))
            for (index, path, _), row in zip(pending, probs):
                values, indices = row.topk(top_k)
                top = tuple((self.class_names[i], float(v)) for v, i in zip(values, indices))
                results[index] = Prediction.of(path, top, threshold)
            pending.clear()

        total = len(all_paths)
        if progress:
            progress(0, total)
        for index, path in enumerate(all_paths):
            if cancel is not None and cancel.is_set():
                break
            try:
                pending.append((index, path, self.tensor_for(path)))
            except ImageProblem as problem:
                results[index] = Prediction(path, (), str(problem))
            if len(pending) >= batch_size:
                flush()
                if progress:
                    progress(len(results), total)
        flush()
        if progress:
            progress(len(results), total)
        return [results[i] for i in range(len(results))]
