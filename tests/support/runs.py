"""Run a trainer's event stream to its end, keeping the events and the result."""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

Result = TypeVar("Result")


def drain(stream: Generator[object, None, Result]) -> tuple[list[object], Result]:
    events: list[object] = []
    while True:
        try:
            events.append(next(stream))
        except StopIteration as finished:
            return events, finished.value
