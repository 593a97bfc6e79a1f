"""Engine layer: the text of a bundle's launch files and README.

Each launch file does the same three things, in this order: pass ``--resume`` when
an interrupted run left its checkpoint (``.<out name>.checkpoint.pt`` beside the
model folder, see ``cli/training.py``), so a requeued or preempted job continues,
and stop if the run already finished; check the data copy against
``manifest.json`` (``finetune-studio-cli verify-data``); then start PyTorch's
``torchrun`` on ``finetune-studio-cli train``. The
files differ only in how they find the nodes: none (``torchrun.sh``), SLURM's
variables and ``scontrol show hostnames`` (``slurm.sbatch``), SkyPilot's
``$SKYPILOT_*`` variables (``skypilot.yaml``).

Values are filled into ``@NAME@`` placeholders (shell and YAML both use ``$``),
quoted for the language of each file.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

TORCHRUN_SH = "torchrun.sh"
SLURM_SBATCH = "slurm.sbatch"
SKYPILOT_YAML = "skypilot.yaml"
README_MD = "README.md"
MANIFEST_JSON = "manifest.json"
RECIPE_JSON = "recipe.json"
DEFAULT_PORT = 29500
SKYPILOT_PORT = 8008  # SkyPilot's own distributed examples use it


@dataclass(frozen=True)
class LaunchSettings:
    dataset: str  # the dataset folder's name, for job names and the README
    nodes: int
    gpus_per_node: int
    data_path: str  # where the copy is on the cluster (relative: to the bundle folder)
    accelerator: str  # SkyPilot's GPU name (A100, H100, L4, ...)
    package: str  # what `pip install` installs on SkyPilot's machines

    @property
    def slug(self) -> str:
        """The dataset's name as a job or cluster name takes it."""
        cleaned = re.sub(r"[^a-z0-9-]+", "-", self.dataset.lower()).strip("-")
        return cleaned or "dataset"

    @property
    def job_name(self) -> str:
        return f"finetune-{self.slug}"

    @property
    def local_out(self) -> str:
        return f"output/{self.slug}-model"


def _fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Z_]+@", template)
    assert not left, f"unfilled placeholders {left}"
    return template


_SHARED_STEPS = r"""CLI="$(command -v finetune-studio-cli || true)"
if [ -z "$CLI" ]; then
  echo "finetune-studio-cli is not on the PATH: activate the Python environment" \
    "where finetune-studio is installed (pip install @PACKAGE@)." >&2
  exit 2
fi

# 1. A requeued or preempted job continues from the checkpoint that the train
#    command keeps beside the model folder until the run completes; a finished
#    run is left alone.
RESUME=""
if [ -f "$(dirname "$OUT")/.$(basename "$OUT").checkpoint.pt" ]; then
  RESUME="--resume"
  echo "Continuing the interrupted run from its checkpoint." >&2
elif [ -e "$OUT" ]; then
  echo "$OUT already holds a finished model: nothing to do" \
    "(move it away, or set OUT, to train again)." >&2
  exit 0
fi

# 2. The data copy must match manifest.json (full: sizes and SHA-256; sizes; off).
#    A resumed job's copy was hashed when it first started: sizes are enough then,
#    rather than reading every picture again while the GPUs wait.
if [ "$VERIFY" = auto ]; then
  if [ -n "$RESUME" ]; then VERIFY=sizes; else VERIFY=full; fi
fi
case "$VERIFY" in
  full) "$CLI" verify-data "$DATA" --manifest manifest.json ;;
  sizes) "$CLI" verify-data "$DATA" --manifest manifest.json --sizes-only ;;
  off) echo "Not checking the data copy (VERIFY=off)." >&2 ;;
  *) echo "VERIFY must be auto, full, sizes or off, not '$VERIFY'." >&2; exit 2 ;;
esac
mkdir -p "$(dirname "$OUT")"
"""

_TORCHRUN_SH = r"""#!/usr/bin/env bash
# Finetune Studio: train @DATASET_TEXT@ with torchrun on this machine (one node).
#
#   cd <this folder> && bash torchrun.sh
#
# Settings, as environment variables [default]:
#   NPROC_PER_NODE  processes, one per GPU [every GPU nvidia-smi lists; 1 without GPUs]
#   DATA            the dataset's copy [@DATA_TEXT@]
#   OUT             the model folder to write [@OUT_TEXT@]
#   VERIFY          auto, full, sizes or off: check the copy against manifest.json [auto:
#                   full, or sizes when resuming]
# The recipe's batch size is the global batch: it must divide by NPROC_PER_NODE.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

DEFAULT_DATA=@DATA@
DATA="${DATA:-$DEFAULT_DATA}"
OUT="${OUT:-@OUT@}"
VERIFY="${VERIFY:-auto}"
if [ -z "${NPROC_PER_NODE:-}" ]; then
  NPROC_PER_NODE="$(nvidia-smi --list-gpus 2>/dev/null | grep -c '^GPU' || true)"
  if [ "${NPROC_PER_NODE:-0}" -lt 1 ]; then NPROC_PER_NODE=1; fi
fi

@SHARED_STEPS@
# 3. Train: one process per GPU, gloo on the CPU, NCCL on CUDA.
# shellcheck disable=SC2086  # RESUME is empty or one flag
exec torchrun --standalone --nnodes 1 --nproc_per_node "$NPROC_PER_NODE" \
  "$CLI" train "$DATA" --recipe recipe.json --out "$OUT" $RESUME
"""

_SLURM_SBATCH = r"""#!/bin/bash
# Finetune Studio: train @DATASET_TEXT@ with SLURM, on @NODES@ node(s) of @GPUS@ GPU(s).
#
#   cd <this folder> && sbatch slurm.sbatch
#
# Submit it from this folder, which must be on a filesystem every node sees
# (the data copy, and the model folder's parent, where the checkpoint is kept).
# Add your site's lines (--partition, --account, --time, --cpus-per-task) below.
#SBATCH --job-name=@JOB_NAME@
#SBATCH --nodes=@NODES@
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=@GPUS@
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
#
# Settings, as environment variables [default]:
#   DATA           the dataset's copy [@DATA_TEXT@]
#   OUT            the model folder to write [@OUT_TEXT@]
#   VERIFY         auto, full, sizes or off: check the copy against manifest.json [auto:
#                   full, or sizes when resuming]
#   GPUS_PER_NODE  processes per node; keep it equal to --gpus-per-node [@GPUS@]
#   MASTER_PORT    the rendezvous port on the first node [@PORT@]
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"  # sbatch runs a copy of this file, from elsewhere
if [ ! -f manifest.json ]; then
  echo "Submit this job from the bundle folder: cd <bundle> && sbatch slurm.sbatch" >&2
  exit 2
fi

DEFAULT_DATA=@DATA@
DATA="${DATA:-$DEFAULT_DATA}"
OUT="${OUT:-@OUT@}"
VERIFY="${VERIFY:-auto}"
GPUS_PER_NODE="${GPUS_PER_NODE:-@GPUS@}"
MASTER_PORT="${MASTER_PORT:-@PORT@}"

@SHARED_STEPS@
# 3. Train: one torchrun per node, meeting at the first node (c10d rendezvous).
# (sed, not head: head's early exit would fail the pipeline under pipefail)
HEAD_NODE="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)"
export CLI DATA OUT RESUME GPUS_PER_NODE MASTER_PORT HEAD_NODE
# Single quotes: $SLURM_NODEID is each node's own, expanded there.
srun --kill-on-bad-exit=1 bash -c 'exec torchrun \
  --nnodes "$SLURM_NNODES" --nproc_per_node "$GPUS_PER_NODE" --node_rank "$SLURM_NODEID" \
  --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$HEAD_NODE:$MASTER_PORT" \
  "$CLI" train "$DATA" --recipe recipe.json --out "$OUT" $RESUME'
"""

_SKYPILOT_YAML = """\
# Finetune Studio: train @DATASET_TEXT@ with SkyPilot, on @NODES@ node(s) of @GPUS@ @ACCEL_TEXT@.
#
#   cd <this folder> && sky launch -c @JOB_NAME@ --env OUTPUT_BUCKET=<a bucket name> skypilot.yaml
#
# This folder is the workdir: it is copied to every node (~/sky_workdir), the data
# copy in it too. The model and its checkpoint go to the bucket OUTPUT_BUCKET
# (SkyPilot creates it if it does not exist), which every node mounts at /outputs:
# it outlives the cluster, and a recovered job (sky jobs launch) continues from it.
name: @JOB_NAME@
workdir: .
num_nodes: @NODES@
resources:
  accelerators: @ACCELERATORS@
envs:
  DATA: @DATA_YAML@
  OUT: @OUT_YAML@
  VERIFY: auto
  OUTPUT_BUCKET: null  # required: sky launch --env OUTPUT_BUCKET=...
file_mounts:
  /outputs:
    name: ${OUTPUT_BUCKET}
    mode: MOUNT
setup: |
  pip install @PACKAGE_YAML@
run: |
  set -euo pipefail
@SHARED_STEPS_YAML@
  # 3. Train: one torchrun per node, meeting at the first node's address.
  MASTER_ADDR="$(echo "$SKYPILOT_NODE_IPS" | sed -n 1p)"
  # shellcheck disable=SC2086  # RESUME is empty or one flag
  torchrun --nnodes "$SKYPILOT_NUM_NODES" --nproc_per_node "$SKYPILOT_NUM_GPUS_PER_NODE" \\
    --node_rank "$SKYPILOT_NODE_RANK" --master_addr "$MASTER_ADDR" --master_port @SKY_PORT@ \\
    "$CLI" train "$DATA" --recipe recipe.json --out "$OUT" $RESUME
"""


def torchrun_sh(settings: LaunchSettings) -> str:
    return _fill(
        _TORCHRUN_SH,
        SHARED_STEPS=_shared_steps(settings),
        **_shell_values(settings),
    )


def slurm_sbatch(settings: LaunchSettings) -> str:
    return _fill(
        _SLURM_SBATCH,
        SHARED_STEPS=_shared_steps(settings),
        JOB_NAME=settings.job_name,
        NODES=str(settings.nodes),
        GPUS=str(settings.gpus_per_node),
        PORT=str(DEFAULT_PORT),
        **_shell_values(settings),
    )


def skypilot_yaml(settings: LaunchSettings) -> str:
    steps = "\n".join(f"  {line}" if line else "" for line in _shared_steps(settings).splitlines())
    return _fill(
        _SKYPILOT_YAML,
        SHARED_STEPS_YAML=steps,
        DATASET_TEXT=_comment_text(settings.dataset),
        ACCEL_TEXT=_comment_text(settings.accelerator),
        JOB_NAME=settings.job_name,
        NODES=str(settings.nodes),
        GPUS=str(settings.gpus_per_node),
        ACCELERATORS=json.dumps(f"{settings.accelerator}:{settings.gpus_per_node}"),
        DATA_YAML=json.dumps(settings.data_path),
        OUT_YAML=json.dumps(f"/outputs/{settings.slug}-model"),
        PACKAGE_YAML=shlex.quote(settings.package),
        SKY_PORT=str(SKYPILOT_PORT),
    )


def _shared_steps(settings: LaunchSettings) -> str:
    return _fill(_SHARED_STEPS, PACKAGE=_in_double_quotes(settings.package))


def _shell_values(settings: LaunchSettings) -> dict[str, str]:
    return {
        "DATASET_TEXT": _comment_text(settings.dataset),
        "DATA_TEXT": _comment_text(settings.data_path),
        "OUT_TEXT": settings.local_out,
        "DATA": shlex.quote(settings.data_path),
        "OUT": settings.local_out,
    }


def _in_double_quotes(text: str) -> str:
    """``text`` as it may stand inside double quotes."""
    return re.sub(r'([\\"$`])', r"\\\1", text)


def _comment_text(text: str) -> str:
    """``text`` on one comment line."""
    return " ".join(text.split())


@dataclass(frozen=True)
class LaunchCommand:
    label: str
    command: str
    where: str


def launch_commands(settings: LaunchSettings, folder: str) -> tuple[LaunchCommand, ...]:
    """The command that starts each launch file; SkyPilot's runs on this computer."""
    return (
        LaunchCommand("One node (torchrun)", "bash torchrun.sh", "in the bundle on a GPU machine"),
        LaunchCommand("SLURM", "sbatch slurm.sbatch", "in the bundle on the login node"),
        LaunchCommand(
            "SkyPilot",
            f"cd {shlex.quote(folder)} && sky launch -c {settings.job_name} "
            "--env OUTPUT_BUCKET=<a bucket name> skypilot.yaml",
            "on this computer",
        ),
    )


def copy_command(settings: LaunchSettings, source: str) -> str:
    """rsync of the dataset to where the launch files look for it (``-L``: the files
    that links point to, as the manifest lists them)."""
    relative = not settings.data_path.startswith(("/", "~"))
    target = f"CLUSTER:{'BUNDLE/' if relative else ''}{settings.data_path}/"
    return f"rsync -aL --info=progress2 {shlex.quote(source)}/ {shlex.quote(target)}"


@dataclass(frozen=True)
class ReadmeFacts:
    """What the README says about the bundle beyond the launch settings."""

    source: str  # the dataset folder on the computer that wrote the bundle
    pictures: int
    size: str  # "12.3 MB"
    recipe_summary: str
    version: str
    extra_files: tuple[tuple[str, str], ...] = ()  # (name, what it is)


_README = """\
# Training @DATASET@ on a cluster

Finetune Studio @VERSION@ wrote this folder for the recipe: @RECIPE@.

| File | What it is |
|---|---|
| `recipe.json` | the recipe; its dataset is `@DATA@`@DATA_NOTE@ |
| `manifest.json` | the dataset's @PICTURES@ pictures (@SIZE@): path, size and SHA-256 of each |
| `torchrun.sh` | one machine, one process per GPU |
| `slurm.sbatch` | a SLURM job over @NODES@ node(s) of @GPUS@ GPU(s) |
| `skypilot.yaml` | a SkyPilot job over @NODES@ node(s) of @GPUS@ @ACCEL@ GPU(s) |
@EXTRA_ROWS@
Every launch file continues an interrupted run from its checkpoint (`--resume`)
and does nothing if the run already finished, checks the data copy against
`manifest.json`, then starts PyTorch's `torchrun` on `finetune-studio-cli train`.
The recipe's batch size is the *global* batch: it is split evenly over all
processes, so it must divide by nodes × GPUs per node. Only
the first process (rank 0) writes the model folder, its metrics and the checkpoint.

## 1. Install and copy

On the cluster (or in `skypilot.yaml`'s setup, which does it for you):

    pip install @PACKAGE@

Copy this folder to the cluster (BUNDLE below), and the dataset to `@DATA@`@DATA_NOTE@;
for SkyPilot, copy the dataset there on your own computer instead: the workdir
carries it to every node. `-L` copies the files that links point to, as the manifest
lists them:

    @COPY@

## 2. Check the copy

The launch files do this first; to check by hand:

    finetune-studio-cli verify-data @DATA@ --manifest manifest.json

Exit status 0: the same files, sizes and hashes; 3: the copy differs (the report
names the missing, changed and extra files); 2: a folder or manifest that cannot be
read. `--sizes-only` compares sizes alone, without reading the pictures.

## 3. Launch

- **One machine:** `bash torchrun.sh` in this folder. One process per GPU that
  `nvidia-smi` lists (one on a machine without GPUs); `NPROC_PER_NODE=2 bash
  torchrun.sh` for fewer.
- **SLURM:** `cd` to this folder on the login node, then `sbatch slurm.sbatch`. Add
  your site's `#SBATCH` lines (partition, account, time) first. The folder must be
  on a filesystem every node sees: the data copy and the checkpoint live in it. The
  job asks to be requeued (`--requeue`); a requeued job continues from the last
  completed epoch.
- **SkyPilot:** on your own computer, `sky launch -c @JOB@ --env
  OUTPUT_BUCKET=<a bucket name> skypilot.yaml` in this folder. The folder (data copy
  included) is synced to every node; the model goes to the bucket, mounted at
  `/outputs`. With `sky jobs launch` instead, a preempted job is recovered and
  continues from its checkpoint in the bucket. For a large dataset, put it in a
  bucket too (a `file_mounts` entry) and set `DATA` to where it is mounted.

## Settings

Environment variables change a launch without editing it: `DATA` (the data copy),
`OUT` (the model folder; its checkpoint is kept beside it as `.NAME.checkpoint.pt`),
`VERIFY` (`auto`, the default: `full` on a first start, `sizes` when a run
resumes; or `full`, `sizes`, `off`), `NPROC_PER_NODE` (torchrun.sh),
`GPUS_PER_NODE` and `MASTER_PORT` (slurm.sbatch; SkyPilot takes `--env`). If `OUT`
already holds a finished model and no checkpoint, a launch does nothing and says so.
"""


def readme(settings: LaunchSettings, facts: ReadmeFacts) -> str:
    relative = not settings.data_path.startswith(("/", "~"))
    rows = "".join(f"| `{name}` | {what} |\n" for name, what in facts.extra_files)
    return _fill(
        _README,
        DATASET=settings.dataset,
        VERSION=facts.version,
        RECIPE=facts.recipe_summary,
        DATA=settings.data_path,
        DATA_NOTE=" (relative to this folder)" if relative else "",
        COPY=copy_command(settings, facts.source),
        PICTURES=f"{facts.pictures:,}",
        SIZE=facts.size,
        NODES=str(settings.nodes),
        GPUS=str(settings.gpus_per_node),
        ACCEL=settings.accelerator,
        EXTRA_ROWS=rows,
        PACKAGE=shlex.quote(settings.package),
        JOB=settings.job_name,
    )
