"""Engine layer: class probabilities for pictures, from any trained model.

A folder of thousands of pictures takes minutes on a CPU, so ``Predictor.predict``
reports progress and can be cancelled between pictures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .images import ImageProblem, is_candidate_image, load_for_model
from .preprocessing import Preprocessing, eval_transform
from .scan import walk_files


@dataclass(frozen=True)
class Prediction:
    path: str
    top: tuple[tuple[str, float], ...]  # (class name, probability), best first
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        if self.error:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "top": [{"class": c, "probability": p} for c, p in self.top]}


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
    ) -> None:
        self.model = model.eval()
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
        self.model.to(self.device)
        return torch.softmax(self.model(batch.to(self.device)).float(), dim=1).cpu()

    def predict(
        self,
        paths: Iterable[str | Path],
        top_k: int = 3,
        batch_size: int = 16,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Prediction]:
        """One prediction per path, in order. ``progress(done, total)`` follows each
        batch of pictures. Once ``cancel`` is set no further picture is read, and the
        predictions of the pictures read so far are returned (a prefix of the paths)."""
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
                results[index] = Prediction(
                    path,
                    tuple((self.class_names[i], float(v)) for v, i in zip(values, indices)),
                )
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
