"""Engine layer: how long a network takes per picture on this device, measured so that
other programs slowing the computer down do not reorder networks compared side by side.

Latency is the fastest timed run: a slower one was slowed by other programs, not by
the network (on this project's busy 2-core machine one network's median at batch 1
came out over 20 times its fastest run, its neighbours' not: a false ranking). A
whole stretch of runs can be slowed too (another program busy for seconds), so
networks compared together are timed again in turns (``time_in_turns``): each keeps its
fastest run of every turn, and a busy moment costs every network a turn, not one
network its only one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Sequence

import torch
from torch import nn

from .devices import synchronize
from .events import StageProgress

LATENCY_BATCHES = (1, 32)
# First calls pay for allocation and kernel choice: left out at batch 1; at 32, beaten.
WARM_UP_RUNS = {1: 2, 32: 0}
MIN_TIMED_RUNS = {1: 5, 32: 2}  # a batch of 32 is itself an average over 32 pictures
MAX_TIMED_RUNS, TIMING_BUDGET_S = 50, 0.5  # more runs while under the budget
TURNS = 2  # timings again, every network in turn, after the first of each
TIMING_AGAIN = "Timing every backbone again, in turns"


def per_picture_ms(
    model: nn.Module,
    batch: int,
    crop: int,
    device: torch.device,
    cancel: threading.Event,
    budget_s: float = TIMING_BUDGET_S,
    again: bool = False,
) -> float | None:
    """Fastest milliseconds per picture of the network's forward pass at ``batch``, in
    float32 (as ``predict`` and the exports run), channels-last on the CPU and CUDA
    (faster convolutions there, as in a run); None when cancelled. ``again``: the
    network has been timed at this batch already: no warm-up, one run at least."""
    pictures = torch.randn(batch, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    pictures = pictures.to(device)
    if device.type in ("cpu", "cuda"):
        pictures = pictures.contiguous(memory_format=torch.channels_last)
    model.eval()
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(0 if again else WARM_UP_RUNS.get(batch, 0)):
            model(pictures)
        synchronize(device)
        started = time.perf_counter()
        least = 1 if again else MIN_TIMED_RUNS.get(batch, 2)
        while len(times) < least or (
            len(times) < MAX_TIMED_RUNS and time.perf_counter() - started < budget_s
        ):
            if cancel.is_set():
                return None
            start = time.perf_counter()
            model(pictures)
            synchronize(device)  # GPU work is queued: time it done, not launched
            times.append(time.perf_counter() - start)
    return min(times) * 1000 / batch


def latencies_ms(
    model: nn.Module,
    crop: int,
    device: torch.device,
    cancel: threading.Event,
    budget_s: float,
    again: bool = False,
) -> tuple[float, ...] | None:
    """Fastest milliseconds per picture at each of ``LATENCY_BATCHES``; None when
    cancelled. ``again``: as ``per_picture_ms``."""
    measured = []
    for batch in LATENCY_BATCHES:
        milliseconds = per_picture_ms(model, batch, crop, device, cancel, budget_s, again)
        if milliseconds is None:
            return None
        measured.append(milliseconds)
    return tuple(measured)


def time_in_turns(
    networks: Sequence[tuple[nn.Module, int]],
    first: Sequence[tuple[float, ...]],
    device: torch.device,
    cancel: threading.Event,
    budget_s: float,
) -> Generator[StageProgress, None, list[tuple[float, ...]] | None]:
    """Each ``(model, crop)`` timed ``TURNS`` more times, every network in turn, with a
    shorter budget each time; returns the fastest of its first timing (``first``) and
    these, per network and batch; None when cancelled."""
    fastest = [list(times) for times in first]
    total = TURNS * len(networks)
    for turn in range(TURNS):
        for number, (model, crop) in enumerate(networks):
            yield StageProgress(TIMING_AGAIN, turn * len(networks) + number, total)
            turn_ms = latencies_ms(model, crop, device, cancel, budget_s / TURNS, again=True)
            if turn_ms is None:
                return None
            fastest[number] = [min(a, b) for a, b in zip(fastest[number], turn_ms, strict=True)]
    yield StageProgress(TIMING_AGAIN, total, total)
    return [tuple(times) for times in fastest]
