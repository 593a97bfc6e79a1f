"""Engine layer: choose where to compute, and with what precision."""

from __future__ import annotations

import torch

from .errors import RecipeError


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(choice: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; a forced device must exist."""
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RecipeError("CUDA was requested, but this machine has no usable CUDA GPU.")
    if choice == "mps" and not mps_available():
        raise RecipeError("Apple MPS was requested, but it is not available on this machine.")
    if choice not in ("cpu", "cuda", "mps"):
        raise RecipeError(f"Unknown device {choice!r}; use auto, cpu, cuda or mps.")
    return torch.device(choice)


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """Mixed precision on CUDA only: bfloat16 where supported (no loss scaling needed),
    else float16 with a gradient scaler."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index or 0
        props = torch.cuda.get_device_properties(index)
        return f"CUDA: {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'' if threads == 1 else 's'})"
