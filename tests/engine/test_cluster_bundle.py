"""The cluster bundle: its files, its launch files run against stand-in commands, and
its refusals (issue 14, hand-off to a cluster)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from finetune_studio.cli import main
from finetune_studio.engine.cluster.bundle import BundleOptions, ClusterBundle
from finetune_studio.engine.cluster.manifest import load_manifest
from finetune_studio.engine.errors import UserFacingError
from finetune_studio.engine.events import StageProgress
from finetune_studio.engine.recipe import Recipe
from support.pictures import make_photo_dataset
from support.runs import drain
from support.tiny import TINY

BASH = shutil.which("bash")
OUT = "output/pets-model"  # the launch files' model folder for the dataset "pets"
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")


@pytest.fixture
def recipe(tmp_path: Path) -> Recipe:
    data = make_photo_dataset(tmp_path / "pets", per_class=3, size=48)
    return Recipe(dataset=str(data), backbone=TINY, epochs=3, batch_size=8, lr=0.01)


def write_bundle(recipe: Recipe, folder: Path, **options: object):  # type: ignore[no-untyped-def]
    return drain(ClusterBundle(recipe, folder, BundleOptions(**options)).events())[1]  # type: ignore[arg-type]


def test_the_bundle_holds_the_recipe_the_manifest_and_three_launch_files(
    recipe: Recipe, tmp_path: Path
) -> None:
    folder = tmp_path / "bundle"
    result = write_bundle(recipe, folder, nodes=2, gpus_per_node=4)

    assert (
        sorted(p.name for p in folder.iterdir())
        == sorted(result.files)
        == [
            "README.md",
            "manifest.json",
            "recipe.json",
            "skypilot.yaml",
            "slurm.sbatch",
            "torchrun.sh",
        ]
    )
    # The same recipe, but for where the data is on the cluster.
    assert Recipe.load(folder / "recipe.json") == recipe.replace(dataset="data")
    manifest = load_manifest(folder / "manifest.json")
    assert len(manifest.files) == result.pictures == 9
    for script in ("torchrun.sh", "slurm.sbatch"):
        assert (folder / script).stat().st_mode & stat.S_IXUSR
    assert [c.label for c in result.commands] == ["One node (torchrun)", "SLURM", "SkyPilot"]


def test_the_launch_files_use_torchruns_own_flags(recipe: Recipe, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    write_bundle(recipe, folder, nodes=2, gpus_per_node=4, accelerator="H100")

    torchrun = (folder / "torchrun.sh").read_text()
    assert "torchrun --standalone --nnodes 1 --nproc_per_node" in torchrun
    assert "nvidia-smi --list-gpus" in torchrun
    slurm = (folder / "slurm.sbatch").read_text()
    for line in ("--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=4", "--requeue"):
        assert f"#SBATCH {line}\n" in slurm
    for flag in (
        '--nnodes "$SLURM_NNODES"',
        '--node_rank "$SLURM_NODEID"',
        "--rdzv_backend c10d",
        '--rdzv_endpoint "$HEAD_NODE:$MASTER_PORT"',
    ):
        assert flag in slurm
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p' in slurm
    for text in (torchrun, slurm):
        assert "verify-data" in text and "--resume" in text
        assert '"$CLI" train "$DATA" --recipe recipe.json --out "$OUT" $RESUME' in text


@needs_bash
def test_the_shell_files_parse_and_pass_an_odd_data_path_as_it_is(
    recipe: Recipe, tmp_path: Path
) -> None:
    odd = "/scratch/my data/$HOME's `pets` }"
    folder = tmp_path / "bundle"
    write_bundle(recipe, folder, data_path=odd)

    for script in ("torchrun.sh", "slurm.sbatch"):
        done = subprocess.run([BASH, "-n", folder / script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    status, calls = launch(folder, "torchrun.sh", stand_ins(tmp_path))
    assert status == 0
    assert calls[0] == f"cli verify-data {odd} --manifest manifest.json"
    assert Recipe.load(folder / "recipe.json").dataset == odd


def test_skypilot_yaml_describes_the_nodes_and_runs_torchrun(
    recipe: Recipe, tmp_path: Path
) -> None:
    yaml = pytest.importorskip("yaml")
    folder = tmp_path / "bundle"
    write_bundle(recipe.replace(batch_size=48), folder, nodes=3, gpus_per_node=8, accelerator="L4")

    task = yaml.safe_load((folder / "skypilot.yaml").read_text())

    assert task["num_nodes"] == 3
    assert task["resources"] == {"accelerators": "L4:8"}
    assert task["workdir"] == "."
    assert task["envs"]["DATA"] == "data" and task["envs"]["OUTPUT_BUCKET"] is None
    assert task["file_mounts"]["/outputs"]["name"] == "${OUTPUT_BUCKET}"
    assert task["setup"].startswith("pip install finetune-studio==")
    run = task["run"]
    for flag in (
        '--nnodes "$SKYPILOT_NUM_NODES"',
        '--nproc_per_node "$SKYPILOT_NUM_GPUS_PER_NODE"',
        '--node_rank "$SKYPILOT_NODE_RANK"',
        'MASTER_ADDR="$(echo "$SKYPILOT_NODE_IPS" | sed -n 1p)"',
        "verify-data",
    ):
        assert flag in run
    if BASH is not None:
        done = subprocess.run([BASH, "-n"], input=run, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


# --- the launch files, run with stand-ins for the CLI, torchrun, scontrol and srun --------
STAND_IN = """#!/bin/bash
echo "{name} $*" >> "$CALLS"
exit {status}
"""


def stand_ins(tmp_path: Path, verify_status: int = 0, gpus: int = 0) -> Path:
    """A folder of fake commands that log their arguments to $CALLS."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {
        "finetune-studio-cli": STAND_IN.format(name="cli", status=verify_status),
        "torchrun": STAND_IN.format(name="torchrun", status=0),
        "scontrol": "#!/bin/bash\nprintf 'node07\\nnode08\\n'\n",
        # srun: the command after its options, run as node 1 of 2 would run it
        "srun": '#!/bin/bash\nshift\nSLURM_NODEID=1 SLURM_NNODES=2 SLURM_JOB_ID=42 "$@"\n',
    }
    if gpus:
        fakes["nvidia-smi"] = "#!/bin/bash\n" + "".join(
            f"echo 'GPU {i}: Fake GPU (UUID: GPU-{i})'\n" for i in range(gpus)
        )
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def launch(folder: Path, script: str, bin_dir: Path, **env: str) -> tuple[int, list[str]]:
    calls = folder.parent / "calls.log"
    calls.unlink(missing_ok=True)
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "CALLS": str(calls),
        "HOME": str(folder.parent),
        **env,
    }
    command = [BASH, script]
    done = subprocess.run(
        command, cwd=folder, env=environment, capture_output=True, text=True, check=False
    )
    lines = calls.read_text().splitlines() if calls.exists() else []
    return done.returncode, lines


@needs_bash
def test_torchrun_sh_checks_the_copy_then_trains_on_every_gpu(
    recipe: Recipe, tmp_path: Path
) -> None:
    folder = tmp_path / "bundle"
    write_bundle(recipe, folder)
    cli = shutil.which("finetune-studio-cli", path=str(stand_ins(tmp_path, gpus=2)))
    assert cli

    status, calls = launch(folder, "torchrun.sh", tmp_path / "bin")

    assert status == 0
    assert calls == [
        "cli verify-data data --manifest manifest.json",
        f"torchrun --standalone --nnodes 1 --nproc_per_node 2 {cli} train data "
        "--recipe recipe.json --out output/pets-model",
    ]


@needs_bash
def test_a_requeued_launch_resumes_and_a_finished_one_does_nothing(
    recipe: Recipe, tmp_path: Path
) -> None:
    folder = tmp_path / "bundle"
    write_bundle(recipe, folder)
    bin_dir = stand_ins(tmp_path)
    (folder / "output").mkdir()
    checkpoint = folder / "output" / ".pets-model.checkpoint.pt"
    checkpoint.write_bytes(b"a checkpoint")

    # Resuming, the copy checked when the job first started is checked by sizes only,
    # unless VERIFY asks for more.
    status, calls = launch(folder, "torchrun.sh", bin_dir, NPROC_PER_NODE="3")
    assert status == 0
    assert calls[0] == "cli verify-data data --manifest manifest.json --sizes-only"
    assert calls[1].startswith("torchrun --standalone --nnodes 1 --nproc_per_node 3 ")
    assert calls[1].endswith("--out output/pets-model --resume")
    _, calls = launch(folder, "torchrun.sh", bin_dir, NPROC_PER_NODE="3", VERIFY="full")
    assert calls[0] == "cli verify-data data --manifest manifest.json"

    checkpoint.unlink()  # the run completed: its model folder is there, no checkpoint
    (folder / "output" / "pets-model").mkdir()
    status, calls = launch(folder, "torchrun.sh", bin_dir)
    assert status == 0
    assert calls == []  # neither a check of the copy nor a run


@needs_bash
def test_a_copy_that_differs_stops_the_launch_with_verify_datas_status(
    recipe: Recipe, tmp_path: Path
) -> None:
    folder = tmp_path / "bundle"
    write_bundle(recipe, folder)

    status, calls = launch(folder, "torchrun.sh", stand_ins(tmp_path, verify_status=3))

    assert status == 3
    assert calls == ["cli verify-data data --manifest manifest.json"]


@needs_bash
def test_slurm_sbatch_starts_torchrun_on_each_node_with_a_c10d_rendezvous(
    recipe: Recipe, tmp_path: Path
) -> None:
    folder = tmp_path / "bundle"
    write_bundle(recipe, folder, nodes=2, gpus_per_node=4, data_path="/scratch/pets")

    status, calls = launch(
        folder,
        "slurm.sbatch",
        stand_ins(tmp_path),
        SLURM_SUBMIT_DIR=str(folder),
        SLURM_JOB_NODELIST="node[07-08]",
    )

    assert status == 0, calls
    assert calls[0] == "cli verify-data /scratch/pets --manifest manifest.json"
    torchrun = calls[1].split()
    assert torchrun[:15] == [
        "torchrun",
        *("--nnodes", "2", "--nproc_per_node", "4", "--node_rank", "1"),
        *("--rdzv_id", "42", "--rdzv_backend", "c10d", "--rdzv_endpoint", "node07:29500"),
        torchrun[13],  # the CLI's full path
        "train",
    ]
    assert torchrun[15:] == ["/scratch/pets", "--recipe", "recipe.json", "--out", OUT]


@needs_bash
def test_torchrun_sh_checks_the_copy_with_the_real_verify_data(
    recipe: Recipe, tmp_path: Path
) -> None:
    """The real command, as the launch file calls it: a copy with a missing picture stops
    the launch before torchrun."""
    real_cli = shutil.which("finetune-studio-cli", path=str(Path(sys.executable).parent))
    if real_cli is None:
        pytest.skip("the console script is not installed beside this interpreter")
    folder = tmp_path / "bundle"
    write_bundle(recipe, folder)
    shutil.copytree(recipe.dataset, folder / "data")
    (folder / "data" / "cat" / "cat_000.jpg").unlink()
    bin_dir = stand_ins(tmp_path)
    (bin_dir / "finetune-studio-cli").unlink()
    (bin_dir / "finetune-studio-cli").symlink_to(real_cli)

    status, calls = launch(folder, "torchrun.sh", bin_dir)

    assert status == 3
    assert calls == []  # torchrun never started


# --- where the bundle goes -------------------------------------------------------------------
def test_a_folder_that_is_not_empty_is_refused_and_left_alone(
    recipe: Recipe, tmp_path: Path
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("my own notes")

    with pytest.raises(UserFacingError, match="is not empty"):
        write_bundle(recipe, folder)
    with pytest.raises(UserFacingError, match="holds no earlier bundle"):
        write_bundle(recipe, folder, overwrite=True)
    assert [p.name for p in folder.iterdir()] == ["README.md"]
    assert (folder / "README.md").read_text() == "my own notes"


def test_overwrite_replaces_an_earlier_bundles_files_and_keeps_its_data(
    recipe: Recipe, tmp_path: Path
) -> None:
    folder = tmp_path / "bundle"
    write_bundle(recipe, folder, nodes=1)
    (folder / "data").mkdir()
    (folder / "data" / "copy.jpg").write_bytes(b"the user's copy")

    write_bundle(recipe, folder, nodes=2, overwrite=True)

    assert "#SBATCH --nodes=2\n" in (folder / "slurm.sbatch").read_text()
    assert (folder / "data" / "copy.jpg").read_bytes() == b"the user's copy"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]


def test_a_bundle_inside_the_dataset_is_refused(recipe: Recipe) -> None:
    with pytest.raises(UserFacingError, match="inside the dataset folder"):
        write_bundle(recipe, Path(recipe.dataset) / "bundle")
    assert not (Path(recipe.dataset) / "bundle").exists()


def test_a_batch_that_does_not_divide_over_the_processes_is_refused(
    recipe: Recipe, tmp_path: Path
) -> None:
    with pytest.raises(UserFacingError, match="multiple of 3"):
        write_bundle(recipe, tmp_path / "bundle", nodes=3, gpus_per_node=1)
    assert not (tmp_path / "bundle").exists()


def test_cancel_leaves_no_folder(recipe: Recipe, tmp_path: Path) -> None:
    bundle = ClusterBundle(recipe, tmp_path / "bundle", BundleOptions())
    events = bundle.events()
    for event in events:
        if isinstance(event, StageProgress):
            bundle.cancel()
            break
    assert drain(events)[1] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pets"]


def test_a_weights_file_travels_in_the_bundle(recipe: Recipe, tmp_path: Path) -> None:
    weights = tmp_path / "my-weights.safetensors"
    weights.write_bytes(b"weights")
    folder = tmp_path / "bundle"

    result = write_bundle(recipe.replace(weights=str(weights)), folder)

    assert (folder / "weights" / "my-weights.safetensors").read_bytes() == b"weights"
    assert Recipe.load(folder / "recipe.json").weights == "weights/my-weights.safetensors"
    assert "weights/my-weights.safetensors" in result.files


# --- the command ----------------------------------------------------------------------------
def test_cluster_bundle_command(
    recipe: Recipe, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe_file = tmp_path / "recipe.json"
    recipe.save(recipe_file)
    out = tmp_path / "bundle"
    argv = ["cluster-bundle", "--recipe", str(recipe_file), "--out", str(out)]

    assert main([*argv, "--nodes", "2", "--gpus-per-node", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["folder"] == str(out) and result["pictures"] == 9
    assert "sbatch slurm.sbatch" in [c["command"] for c in result["commands"]]
    assert Recipe.load(out / "recipe.json") == recipe.replace(dataset="data")

    assert main(argv) == 2  # never over a bundle without --overwrite
    err = capsys.readouterr().err
    assert "is not empty" in err and len(err.strip().splitlines()) == 1
    assert main([*argv, "--overwrite", "--data-path-on-cluster", "/scratch/pets"]) == 0
    assert Recipe.load(out / "recipe.json").dataset == "/scratch/pets"
    assert "sky launch" in capsys.readouterr().out
