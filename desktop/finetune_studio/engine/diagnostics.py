"""Engine layer: checks that this installation can run what training needs.

Used by ``finetune-studio --self-check``, mainly for the frozen (PyInstaller) app,
where the classic failures are missing compiled parts and worker processes that
cannot start.
"""

from __future__ import annotations

import multiprocessing

import torch
from torch.utils.data import DataLoader, TensorDataset

from .errors import WorkerProcessError


def check_worker_processes(start_method: str = "spawn", timeout_s: float = 120.0) -> None:
    """Read a few batches through one DataLoader worker started with ``start_method``.

    "spawn" (the only method on Windows, the default on macOS) starts this program
    afresh: a frozen app must hand that start to multiprocessing (``freeze_support``)
    and the dataset must unpickle there. Raises ``WorkerProcessError`` on failure.
    """
    numbers = torch.arange(12)
    loader = DataLoader(
        TensorDataset(numbers),
        batch_size=4,
        num_workers=1,
        multiprocessing_context=multiprocessing.get_context(start_method),
        timeout=timeout_s,  # a worker that never starts must not hang the check
    )
    try:
        received = torch.cat([batch for (batch,) in loader])
    except Exception as error:  # whatever the worker died of, say it plainly
        raise WorkerProcessError(
            f"DataLoader worker processes ({start_method}) could not start: {error}. "
            "Training still works with no worker processes (the CLI's --workers 0)."
        ) from error
    if not torch.equal(received, numbers):
        raise WorkerProcessError(f"DataLoader worker processes ({start_method}) lost data.")
