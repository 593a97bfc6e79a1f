"""Engine layer: makes the data-loading fork server end at once when the run ends.

``loading.worker_context`` lists this module in the fork server's preload, so it is
imported there and nowhere else. The server ends when the process that started it
exits; Python's teardown of torch then takes it about a second, during which it still
holds that process's stdout and stderr (anything reading them through a pipe, such
as ``finetune-studio-cli ... | tee log``, waits for it). The server writes nothing
and keeps no files: after the ``atexit`` callbacks it leaves without the teardown.
Workers forked from it already leave with ``os._exit``.
"""

from __future__ import annotations

import atexit
import os
import sys


def _inside_fork_server() -> bool:
    """True only while ``multiprocessing.forkserver.main`` is importing this module."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    if forkserver is None:
        return False
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _end_now() -> None:
    atexit.unregister(_end_now)
    atexit._run_exitfuncs()
    os._exit(0)


if _inside_fork_server():
    atexit.register(_end_now)
