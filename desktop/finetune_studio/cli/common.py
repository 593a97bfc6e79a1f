"""CLI layer: what every command shares: exit codes, JSON and progress output, the
parser class, Ctrl-C handling, and draining an engine task's events."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Generator, Iterator
from types import FrameType
from typing import TYPE_CHECKING, NoReturn, Protocol, TypeAlias, TypeVar

if TYPE_CHECKING:
    from ..engine.events import Log, StageProgress

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
EXIT_STOPPED = 130  # stopped by Ctrl-C, as a shell reports it

Handler = Callable[[argparse.Namespace], int]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # add_commands gets it
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


class StderrProgress:
    """One updating line on a terminal; a line per step of ``every`` otherwise."""

    def __init__(self, label: str, every: int = 0) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.every = every

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            end = "\n" if done >= total else ""
            print(f"\r{self.label}: {done}/{total}", end=end, file=sys.stderr, flush=True)
        elif done == total or (self.every and done and done % self.every == 0):
            print(f"{self.label}: {done}/{total}", file=sys.stderr, flush=True)


def print_log(event: Log) -> None:
    prefix = "warning: " if event.level == "warning" else ""
    print(f"{prefix}{event.message}", file=sys.stderr, flush=True)


def print_stage(event: StageProgress) -> None:
    StderrProgress(event.stage)(event.done, event.total)


def drain(events: Generator[object, None, T]) -> T:
    """Run an engine task to its end, printing its progress and log lines to stderr;
    returns what the task returns."""
    from ..engine.events import Log, StageProgress

    while True:
        try:
            event = next(events)
        except StopIteration as finished:
            return finished.value  # type: ignore[no-any-return]
        if isinstance(event, StageProgress):
            print_stage(event)
        elif isinstance(event, Log):
            print_log(event)


def drain_steps(steps: Generator[tuple[int, int], None, T], label: str) -> T:
    """Run an engine generator of ``(done, total)`` steps to its end, with progress."""
    from ..engine.events import as_stage_progress

    return drain(as_stage_progress(steps, label))


class CancellableTask(Protocol[T_co]):
    """An engine task: a generator of events that returns its outcome (None when
    cancelled), and a thread-safe cancel."""

    def events(self) -> Generator[object, None, T_co | None]: ...

    def cancel(self) -> None: ...


def run_cancellable(task: CancellableTask[T], what: str) -> T | None:
    """Run ``task`` to its end, progress on stderr; the first Ctrl-C asks it to stop.
    None, after saying so, when it was stopped."""
    with first_ctrl_c_calls(task.cancel, f"Stopping the {what}"):
        outcome = drain(task.events())
    if outcome is None:
        print(f"finetune-studio-cli: the {what} was stopped", file=sys.stderr)
    return outcome


@contextlib.contextmanager
def first_ctrl_c_calls(cancel: Callable[[], None], saying: str) -> Iterator[None]:
    """The first Ctrl-C asks the work to stop cleanly; a second one interrupts."""

    def stop(signum: int, frame: FrameType | None) -> None:
        print(f"\n{saying} (Ctrl-C again to abort)...", file=sys.stderr)
        cancel()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
