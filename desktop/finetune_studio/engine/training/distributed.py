"""Engine layer: one run spread over several processes by torchrun (PyTorch's DDP).

torchrun starts the same command once per process and says in the environment
which one each is (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...).
``join`` turns that into a process group (gloo on the CPU, NCCL on CUDA) and a
``Processes`` value the trainer consults:

- the split and the recipe are the same everywhere (checked: a mismatch is an error);
- the recipe's batch size is the *global* batch: each process steps on its share of
  it, picked by a ``DistributedSampler``, and DDP averages the gradients, so the
  optimisation is that of one process with the whole batch;
- the head-only path computes each picture's features once, in one process, and
  every process receives all of them;
- only the first process (rank 0) writes the run's files; the first process of each
  machine fills that machine's feature cache.

Every decision that changes what the processes do next (stop now, skip a batch,
end the run) is agreed between them, so none is left waiting in a collective.
"""

from __future__ import annotations

import datetime
import hashlib
import inspect
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import RecipeError, UserFacingError
from ..evaluation import Evaluation
from ..inspection import DatasetReport, Sample
from ..loading import Batch
from ..review.records import Predictions

DEFAULT_TIMEOUT_S = 300.0
"""How long a process waits for the others: to join, and in any one collective."""

T = TypeVar("T")


@dataclass(frozen=True)
class Processes:
    """Where this process stands among those of one run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    on_this_machine: int = 1  # processes of the run that share this machine's memory

    @property
    def active(self) -> bool:
        """True when there are other processes to agree with."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The process that writes the run's files and speaks for it."""
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's share of ``items``: every ``world_size``-th from its rank."""
        return list(items[self.rank :: self.world_size])

    def per_process_batch(self, global_batch: int) -> int:
        if global_batch % self.world_size:
            raise RecipeError(
                f"The batch size {global_batch} is the global batch, shared by "
                f"{self.world_size} processes: choose a multiple of {self.world_size}."
            )
        return global_batch // self.world_size

    def device_for(self, device: torch.device) -> torch.device:
        """This process's own GPU on CUDA; gloo cannot exchange Apple MPS tensors."""
        if device.type == "mps":
            raise RecipeError(
                "Under torchrun, train on CUDA GPUs or on the CPU (--device cpu): "
                "Apple MPS has no backend for several processes."
            )
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device

    @property
    def collective_device(self) -> torch.device:
        """Where tensors must be for a collective: NCCL works on the GPU only."""
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


ONE_PROCESS = Processes()


def launched_by_torchrun() -> bool:
    """True when the environment names this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def join(device_choice: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Processes:
    """Join the process group torchrun's environment describes; gloo on the CPU,
    NCCL when the run trains on CUDA (each process on its ``LOCAL_RANK`` GPU)."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as error:  # torch raises several kinds for one cause
            where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
            raise UserFacingError(
                f"Process {rank} of {world} could not join the others at {where} "
                f"within {timeout_s:g} s: {_first_line(error)}. Check the master's "
                "address and port, that it is reachable from every node, and that every "
                "process was started."
            ) from None
    on_this_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return Processes(rank, world, local_rank, backend, on_this_machine)


def leave(processes: Processes) -> None:
    """Leave the process group once no exchange follows. A process that ends while
    still in it can abort at exit ("terminate called without an active exception"):
    the group's communication threads must not outlive the interpreter."""
    if processes.active and dist.is_initialized():
        dist.destroy_process_group()


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


# --- agreement -------------------------------------------------------------------------------
def _digest(data: Any) -> torch.Tensor:
    text = json.dumps(data, sort_keys=True, default=str).encode()
    return torch.tensor(list(hashlib.sha256(text).digest()), dtype=torch.uint8)


def ranks_that_differ(processes: Processes, data: Any) -> list[int]:
    """The ranks whose ``data`` differs from rank 0's (compared by hash)."""
    if not processes.active:
        return []
    mine = _digest(data).to(processes.collective_device)
    everyone = [torch.empty_like(mine) for _ in range(processes.world_size)]
    dist.all_gather(everyone, mine)
    return [rank for rank, theirs in enumerate(everyone) if not torch.equal(theirs, everyone[0])]


def require_same(processes: Processes, data: Any, what: str, advice: str) -> None:
    """Raise on every process when some hold a different ``data`` from rank 0's."""
    differ = ranks_that_differ(processes, data)
    if differ:
        ranks = ", ".join(str(rank) for rank in differ)
        raise UserFacingError(
            f"Process(es) {ranks} have a different {what} from process 0. {advice}"
        )


def require_same_split(processes: Processes, report: DatasetReport) -> None:
    """Every process must train on the same split of the same pictures, wherever each
    node keeps its copy (compared by the paths inside the dataset folder)."""
    if not processes.active:
        return

    def inside(samples: Sequence[Sample]) -> list[tuple[str, int]]:
        return [(os.path.relpath(s.path, report.root), s.label) for s in samples]

    require_same(
        processes,
        [report.classes, inside(report.train), inside(report.val)],
        "dataset split",
        "Give every process the same copy of the dataset (finetune-studio-cli "
        "verify-data checks a copy against the cluster bundle's manifest).",
    )


def any_process(processes: Processes, *flags: bool) -> list[bool]:
    """For each flag, whether it is set in any process (one small collective)."""
    if not processes.active:
        return list(flags)
    tensor = torch.tensor([int(flag) for flag in flags], device=processes.collective_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(value) for value in tensor.tolist()]


def stop_together(processes: Processes, cancel: threading.Event, batch: Batch | None) -> bool:
    """Whether any process stops (then ``cancel`` is set in all); a ``batch`` that one
    of them could not load is emptied in all, so every process skips that step."""
    empty = batch is not None and batch.images is None
    stop, any_empty = any_process(processes, cancel.is_set(), empty)
    if stop:
        cancel.set()
    if any_empty and batch is not None:
        batch.images = None
    return stop


def sum_over_processes(processes: Processes, *values: float) -> list[float]:
    """Each value summed over the processes (an epoch's tallies)."""
    if not processes.active:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=processes.collective_device)
    dist.all_reduce(tensor)
    return [float(value) for value in tensor.tolist()]


def wait_for_all(processes: Processes) -> None:
    """Return once every process has reached this point."""
    if processes.active:
        dist.barrier()


def main_decides(processes: Processes, decision: bool) -> bool:
    """Rank 0's ``decision``, for every process."""
    if not processes.active:
        return decision
    tensor = torch.tensor([int(decision)], device=processes.collective_device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


# --- the model -------------------------------------------------------------------------------
def wrap_for_training(processes: Processes, model: nn.Module) -> nn.Module:
    """The module whose backward passes average gradients over the processes.

    Built again whenever the trainable parameters change (gradual unfreezing), since
    DDP registers them once. Buffers are aligned when it is built, not at every step:
    ``sync_buffers`` aligns them again before each evaluation.
    """
    if not processes.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [processes.local_rank] if processes.backend == "nccl" else None
    # Newer torch renamed ``broadcast_buffers`` (and warns about the old name).
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    if renamed:
        return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def sync_buffers(processes: Processes, model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) everywhere, so every process
    evaluates the same model and reaches the same decisions."""
    if not processes.active:
        return
    for buffer in model.buffers():
        on_device = buffer.to(processes.collective_device)
        dist.broadcast(on_device, src=0)
        if on_device is not buffer:
            buffer.copy_(on_device)


# --- evaluation ------------------------------------------------------------------------------
def gather_evaluation(
    processes: Processes, mine: Evaluation, val_paths: Sequence[str], num_classes: int
) -> Evaluation:
    """The evaluation of every validation picture, from each process's evaluation of
    its share (which kept every picture's prediction): the figures one process
    evaluating them all reports, in the validation set's order."""
    assert mine.predictions is not None, "a shared evaluation keeps every prediction"
    position = {os.path.abspath(path): index for index, path in enumerate(val_paths)}
    kept = mine.predictions
    rows = {  # one row a picture: its class, its loss, its probabilities (exact in float64)
        position[path]: torch.from_numpy(np.concatenate([[true, loss], probabilities]))
        for path, true, loss, probabilities in zip(
            kept.paths,
            kept.true.tolist(),
            kept.loss.tolist(),
            kept.probabilities.astype(np.float64),
        )
    }
    everyone = gather_rows(processes, rows)
    order = sorted(everyone)
    table = np.stack([everyone[index].numpy() for index in order]) if order else None
    if table is None:
        table = np.zeros((0, 2 + num_classes))
    true = table[:, 0].astype(np.int64)
    probabilities = table[:, 2:].astype(np.float32)
    predictions = Predictions(
        tuple(os.path.abspath(val_paths[index]) for index in order),
        true,
        probabilities,
        table[:, 1].astype(np.float32),
    )
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (true, probabilities.argmax(1)), 1)
    seen = len(order)
    return Evaluation(
        loss=float(table[:, 1].mean()) if seen else float("nan"),
        accuracy=float(np.trace(confusion)) / seen if seen else float("nan"),
        images=seen,
        confusion=confusion.tolist(),
        failures=[path for index, path in enumerate(val_paths) if index not in everyone],
        predictions=predictions,
    )


# --- features --------------------------------------------------------------------------------
def gather_rows(processes: Processes, rows: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Every process's ``{index: tensor}`` rows (all of one shape and type), everywhere:
    views of one matrix, received in one exchange.

    Sent as bytes, padded to the largest share, so any dtype travels through gloo.
    """
    if not processes.active:
        return rows
    device = processes.collective_device
    indices = sorted(rows)
    counts = torch.tensor([len(indices)], device=device)
    all_counts = [torch.empty_like(counts) for _ in range(processes.world_size)]
    dist.all_gather(all_counts, counts)
    largest = max(int(count.item()) for count in all_counts)  # shares are padded to it
    template = _row_template(processes, rows)
    if template is None:
        return {}
    raw = torch.zeros((largest, _as_bytes(template).numel()), dtype=torch.uint8)
    labels = torch.full((largest,), -1, dtype=torch.long)
    if indices:
        raw[: len(indices)] = torch.stack([_as_bytes(rows[index]) for index in indices])
        labels[: len(indices)] = torch.tensor(indices)
    all_raw = [torch.empty_like(raw, device=device) for _ in range(processes.world_size)]
    all_labels = [torch.empty_like(labels, device=device) for _ in range(processes.world_size)]
    dist.all_gather(all_raw, raw.to(device))
    dist.all_gather(all_labels, labels.to(device))
    every_label = torch.cat(all_labels).cpu()
    present = every_label >= 0  # padding rows are marked -1
    matrix = torch.cat(all_raw).cpu()[present].view(template.dtype)
    return dict(
        zip(
            every_label[present].tolist(),
            matrix.reshape(-1, *template.shape).unbind(0),
            strict=True,
        )
    )


def _as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def _row_template(processes: Processes, rows: dict[int, torch.Tensor]) -> torch.Tensor | None:
    """One row's shape and type, which a process with no rows of its own learns from
    the first process that has some; None when no process has any."""
    mine = next(iter(rows.values()), None)
    shape = list(mine.shape) if mine is not None else []
    description = torch.zeros(9, dtype=torch.long, device=processes.collective_device)
    if mine is not None:
        description[0] = 1
        description[1] = _DTYPES.index(mine.dtype)
        description[2] = len(shape)
        description[3 : 3 + len(shape)] = torch.tensor(shape)
    every = [torch.empty_like(description) for _ in range(processes.world_size)]
    dist.all_gather(every, description)
    found = next((row for row in every if int(row[0]) == 1), None)
    if found is None:
        return None
    dims = [int(size) for size in found[3 : 3 + int(found[2])]]
    return torch.empty(dims, dtype=_DTYPES[int(found[1])])


_DTYPES = [
    torch.float32, torch.bfloat16, torch.float16, torch.float64,
    torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
]  # fmt: skip
