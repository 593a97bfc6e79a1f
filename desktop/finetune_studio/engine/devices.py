"""Engine layer: choose where to compute, and with what precision."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from .errors import RecipeError


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def available_devices() -> tuple[str, ...]:
    """The forced device choices that exist on this machine (``cpu`` always does)."""
    present = ["cpu"]
    if torch.cuda.is_available():
        present.append("cuda")
    if mps_available():
        present.append("mps")
    return tuple(present)


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


def cpu_has_native_bfloat16() -> bool:
    """AVX-512 BF16 or AMX: bfloat16 matrix maths in hardware."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, check, lambda: False)()) for check in checks)


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The mixed-precision type, or None for full float32.

    CUDA: bfloat16 where supported (no loss scaling needed), else float16 with a
    gradient scaler. CPU: bfloat16 only where the hardware computes it natively;
    on such a CPU (AVX-512 BF16) it doubled ResNet-18 training throughput here.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bfloat16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[object]:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index or 0
        props = torch.cuda.get_device_properties(index)
        return f"CUDA: {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'' if threads == 1 else 's'})"


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on a GPU, so a clock around it measures the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
