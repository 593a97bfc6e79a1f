"""The one worker model: progress in bundles, outcomes as data, cancel, bounded stop."""

from __future__ import annotations

import sys
import threading

import pytest

from finetune_studio.engine.errors import DatasetError
from finetune_studio.ui.workers.tasks import (
    FunctionJob,
    Progress,
    TaskRunner,
    background_threads_running,
)
from finetune_studio.ui.workers.thread_priority import current_thread_niceness

GATE_S = 30  # a safety net: no gate in these tests is meant to time out


class Recorder:
    """Collects what a task announces (connected in the GUI thread, so lambdas are fine)."""

    def __init__(self, task) -> None:
        self.progress: list[list[object]] = []
        self.outcomes: list[tuple[object, ...]] = []
        task.progressed.connect(self.progress.append)
        task.succeeded.connect(lambda result: self.outcomes.append(("succeeded", result)))
        task.failed.connect(lambda *args: self.outcomes.append(("failed", *args)))
        task.cancelled.connect(lambda: self.outcomes.append(("cancelled",)))

    @property
    def events(self) -> list[object]:
        return [event for bundle in self.progress for event in bundle]


@pytest.fixture
def runner(qtbot):
    runner = TaskRunner()
    yield runner
    runner.shutdown(5)
    qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=10_000)


def test_thousands_of_progress_reports_arrive_in_few_bundles_and_none_is_lost(qtbot, runner):
    reported, release = threading.Event(), threading.Event()

    def busy(progress, cancel):
        for done in range(1, 10_001):
            progress(done, 10_000)
        reported.set()
        release.wait(GATE_S)  # quiet now: the last reports must not wait for more
        return "done"

    task = runner.run_function(busy, "busy")
    recorder = Recorder(task)
    qtbot.waitUntil(lambda: len(recorder.events) == 10_000, timeout=10_000)

    assert task.running  # all delivered while the job is still going
    assert recorder.events == [Progress(done, 10_000) for done in range(1, 10_001)]
    assert len(recorder.progress) < 100  # bundles, not a signal per report
    release.set()
    qtbot.waitUntil(lambda: recorder.outcomes == [("succeeded", "done")], timeout=10_000)


def test_errors_cross_the_boundary_as_message_and_traceback(qtbot, runner):
    def bug(progress, cancel):
        raise KeyError("no such thing")

    def bad_input(progress, cancel):
        raise DatasetError("The folder holds no pictures.")

    bug_task, input_task = runner.run_function(bug, "bug"), runner.run_function(bad_input, "in")
    bug_outcome, input_outcome = Recorder(bug_task), Recorder(input_task)
    qtbot.waitUntil(lambda: bool(bug_outcome.outcomes and input_outcome.outcomes))

    [(kind, message, details)] = bug_outcome.outcomes
    assert kind == "failed" and "no such thing" in message
    assert "Traceback" in details and "in bug" in details and "KeyError" in details
    assert input_outcome.outcomes == [("failed", "The folder holds no pictures.", "")]


def test_a_cancel_reaches_a_busy_job_directly(qtbot, runner):
    started = threading.Event()

    def stops_when_asked(progress, cancel):
        started.set()
        if not cancel.wait(GATE_S):
            return "never asked"
        raise DatasetError("The check of the folder was cancelled.")

    def keeps_what_it_has(progress, cancel):
        started.set()
        cancel.wait(GATE_S)
        return "best so far"

    for job, expected in ((stops_when_asked, ("cancelled",)), (keeps_what_it_has, None)):
        started.clear()
        task = runner.run_function(job, "job")
        recorder = Recorder(task)
        qtbot.waitUntil(started.is_set)
        task.cancel()  # the worker thread is blocked: only a direct call reaches it
        qtbot.waitUntil(lambda: not task.running, timeout=10_000)  # noqa: B023
        assert recorder.outcomes == [expected or ("succeeded", "best so far")]


def test_shutdown_waits_a_bounded_time_and_the_rest_finish_on_their_own(qtbot, runner):
    release = threading.Event()
    started = threading.Event()

    class Stubborn(FunctionJob):
        """A job whose step in progress cannot be interrupted (a read on a stalled
        network, a training batch)."""

        def __init__(self) -> None:
            super().__init__(self.work)

        def work(self, progress, cancel):
            started.set()
            release.wait(GATE_S)
            return "late"

    task = runner.start(Stubborn(), "stubborn")
    recorder = Recorder(task)
    qtbot.waitUntil(started.is_set)

    assert runner.shutdown(0.05) is False  # returned with the job still in its step
    assert background_threads_running() == 1 and task.discarded
    release.set()
    qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=10_000)
    assert recorder.outcomes == [] and recorder.progress == []  # nobody was listening
    assert not runner.busy


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_a_tasks_work_gives_way_to_the_window(qtbot, runner):
    """The GUI thread wins the CPU from a run, a check or an export, and so do the
    threads the work starts (Pillow's decoding threads inherit the priority)."""

    def niceness_here_and_in_a_thread_it_starts(progress, cancel):
        seen: list[int] = []
        started = threading.Thread(target=lambda: seen.append(current_thread_niceness()))
        started.start()
        started.join()
        return current_thread_niceness(), seen[0]

    task = runner.run_function(niceness_here_and_in_a_thread_it_starts, "nice")
    recorder = Recorder(task)
    qtbot.waitUntil(lambda: bool(recorder.outcomes), timeout=GATE_S * 1000)

    window = current_thread_niceness()
    ((kind, (worker, its_thread)),) = recorder.outcomes
    assert kind == "succeeded"
    assert worker > window or worker == 19
    assert its_thread == worker
