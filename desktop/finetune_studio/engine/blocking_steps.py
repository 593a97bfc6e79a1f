"""Engine layer: a blocking call that reports ``(done, total)`` (a download, say), run so
that the engine's generators can still yield its progress as events.

A generator cannot yield from inside a callback: the call runs in a helper thread,
and the generator yields the latest progress it reported, ten times a second, until
the call returns (or raises, which is raised again here).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import TypeVar

from .events import StageProgress

Result = TypeVar("Result")
POLL_S = 0.1


def with_progress(
    call: Callable[[Callable[[int, int], None]], Result], stage: str
) -> Generator[StageProgress, None, Result]:
    """``call(progress)`` in a helper thread; its progress as ``StageProgress`` of
    ``stage``. ``call`` must end on its own once cancelled (as downloads do)."""
    latest: list[tuple[int, int]] = []
    outcome: dict[str, object] = {}

    def progress(done: int, total: int) -> None:
        latest[:] = [(done, total)]

    def work() -> None:
        try:
            outcome["result"] = call(progress)
        except BaseException as error:  # raised again in the generator's thread
            outcome["error"] = error

    thread = threading.Thread(target=work, name=stage, daemon=True)
    thread.start()
    shown: tuple[int, int] | None = None
    while shown is None or thread.is_alive():
        thread.join(POLL_S)
        if latest and latest[0] != shown:
            shown = latest[0]
            yield StageProgress(stage, *shown)  # the last step too, once it has ended
        elif not thread.is_alive():
            break
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]  # type: ignore[return-value]
