"""UI layer: worker threads yield the CPU to the window.

A run, a folder check or an export keeps the CPU busy for minutes while the GUI
thread needs it for a few milliseconds at a time; when both want it at once, the
window should win. Each worker thread therefore lowers its own scheduling priority
when it starts. Threads and processes it creates (Pillow's decoding threads, data
loader processes) inherit the lower priority on Linux. The work loses nothing while
the window is idle; it gives way to the window, and to the user's other programs.

Linux schedules threads one by one, so a thread's nice value is its own
(``setpriority`` on its thread id); Qt's thread priorities do nothing there for
ordinary threads. Elsewhere Qt's are the portable way.
"""

from __future__ import annotations

import os
import sys
import threading

from PySide6.QtCore import QThread

NICENESS_STEP = 10  # each unit of nice is ~1.25x less CPU when threads compete
MOST_NICE = 19


def lower_current_thread_priority() -> None:
    """Give the calling thread a lower priority than the thread that started it."""
    if sys.platform.startswith("linux"):
        thread_id = threading.get_native_id()
        try:
            current = os.getpriority(os.PRIO_PROCESS, thread_id)
            os.setpriority(os.PRIO_PROCESS, thread_id, min(MOST_NICE, current + NICENESS_STEP))
        except OSError:  # a sandbox that forbids it: run at the usual priority
            pass
        return
    QThread.currentThread().setPriority(QThread.Priority.LowPriority)


def current_thread_niceness() -> int:
    """The calling thread's nice value (Linux), for tests and diagnostics."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
