"""A blocking call's progress (a download's) reaches the engine's event stream."""

from __future__ import annotations

import threading

import pytest

from finetune_studio.engine.blocking_steps import with_progress
from support.runs import drain


def test_a_blocking_calls_progress_is_yielded_and_its_result_returned() -> None:
    reported = threading.Event()

    def download(progress) -> str:
        progress(1, 3)
        reported.wait(5)  # until the generator has seen the first step
        progress(3, 3)
        return "weights"

    work = with_progress(download, "resnet18: downloading its weights")
    first = next(work)
    assert (first.stage, first.done, first.total) == ("resnet18: downloading its weights", 1, 3)
    reported.set()
    events, result = drain(work)
    assert result == "weights"
    assert [(e.done, e.total) for e in events] == [(3, 3)]


def test_an_error_in_the_call_is_raised_in_the_generators_thread() -> None:
    def download(progress) -> str:
        raise OSError("no network")

    with pytest.raises(OSError, match="no network"):
        drain(with_progress(download, "downloading"))
