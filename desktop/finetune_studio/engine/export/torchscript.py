"""Engine layer: the TorchScript export (legacy; ``torch.jit`` warns that it is
deprecated since torch 2.10, but C++ and older mobile runtimes still load it)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .common import (
    LoadedModel,
    check_parity,
    conversion_errors,
    sample_batch,
    save_export_file,
)


def export_torchscript(
    loaded: LoadedModel,
    destination: str | Path,
    images: torch.Tensor | None = None,
    overwrite: bool = False,
) -> float:
    """Trace to TorchScript, verify it, keep it. Returns the max probability difference."""
    batch = sample_batch(loaded.preprocessing, images)
    model = loaded.model.eval()
    with torch.inference_mode():
        reference = model(batch)

    result: dict[str, float] = {}

    def write(path: Path) -> None:
        with warnings.catch_warnings(), conversion_errors("TorchScript"):
            # torch.jit is deprecated upstream but remains the format C++/mobile users load.
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.trace(model, batch[:1]).save(str(path))  # type: ignore[no-untyped-call]
            reloaded = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        with torch.inference_mode():
            result["difference"] = check_parity(reference, reloaded(batch), "TorchScript")

    save_export_file(Path(destination), write, overwrite)
    return result["difference"]
