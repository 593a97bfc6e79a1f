"""Benchmark: Finetune Studio's engine against the plain PyTorch transfer-learning recipe.

    python tests/benchmarks/bench_training.py            # about 10 minutes on 2 CPU cores
    python tests/benchmarks/bench_training.py --quick    # a smaller run, to try it out
    python tests/benchmarks/bench_training.py --before OLD/desktop   # also time older code
    python tests/benchmarks/bench_training.py --stages ours_full,plain_full  # full fine-tuning

Builds its own dataset (7 classes of 500x375 JPEGs in train/ and val/, plus a few
4000x3000 JPEGs and a small dataset of them), then times, in one run and on the same data:

1. the plain recipe, written as a user would write it (frozen ResNet-18, new fc,
   Adam on fc, ImageFolder with RandomResizedCrop, validation every epoch), head only;
2. Finetune Studio's engine on the same task (same backbone, split and epochs);
3. the same pair for full fine-tuning (everything trainable);
4. one pure forward pass of the backbone over the dataset (the floor for head-only),
   and decoding the large JPEGs, plain PIL against ours;
5. ``finetune-studio-cli train --freeze head`` end to end, from the command to the
   process's exit, against the floor: the time until the CLI's imports are done plus
   one forward pass in the run's precision;
6. the head-only pair on phone photos (4000x3000).

``--before DIR`` also times our stages with the package found in DIR (for example an
unpacked ``git archive`` of an older commit's desktop/), in the same run.

Each stage runs in its own process, so its peak memory is its own. ResNet-18 is used
with random weights: no download is possible here, and speed does not depend on the
weight values. The numbers that matter are the ratios, measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

CLASSES = 7
SIZE = (500, 375)
BIG_SIZE = (4000, 3000)
PHONE_PER_CLASS = 4


def make_dataset(root: Path, per_class: int, big: int) -> None:
    from PIL import Image

    from finetune_studio.engine.sample_data import SAMPLE_CLASSES, draw_picture

    rng = np.random.default_rng(0)
    kinds = [*SAMPLE_CLASSES, "plain"][:CLASSES]
    for kind in kinds:
        for index in range(per_class):
            split = "val" if index % 5 == 0 else "train"
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            if kind == "plain":
                picture = Image.fromarray(
                    rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
                )
            else:
                picture = draw_picture(kind, rng, SIZE[0]).crop((0, 0, *SIZE))
            picture.save(folder / f"{kind}_{index:03d}.jpg", quality=90)
    big_folder = root.parent / "big"
    big_folder.mkdir(exist_ok=True)
    for index in range(big):
        noise = rng.integers(0, 255, (BIG_SIZE[1] // 8, BIG_SIZE[0] // 8, 3), dtype=np.uint8)
        Image.fromarray(noise).resize(BIG_SIZE).save(big_folder / f"big_{index}.jpg", quality=90)


def make_phone_dataset(root: Path, per_class: int) -> None:
    """Phone-sized photos (4000x3000), a tint per class over blurred noise."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for label in range(CLASSES):
        tint = rng.integers(0, 255, 3)
        for index in range(per_class):
            split = "val" if index % 4 == 0 else "train"
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            small = rng.integers(0, 255, (BIG_SIZE[1] // 16, BIG_SIZE[0] // 16, 3))
            pixels = ((small + tint) // 2).astype(np.uint8)
            picture = Image.fromarray(pixels).resize(BIG_SIZE)
            picture.save(folder / f"photo_{index:02d}.jpg", quality=90)


# --- the plain recipe, as a user would write it ---------------------------------------------
def plain_recipe(data: Path, epochs: int, full: bool) -> int:
    import torch
    import torchvision
    from torch import nn
    from torchvision import datasets, transforms

    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    train_tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            normalize,
        ]
    )
    val_tf = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize]
    )
    train_set = datasets.ImageFolder(str(data / "train"), train_tf)
    val_set = datasets.ImageFolder(str(data / "val"), val_tf)
    workers = min(4, os.cpu_count() or 1)
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=32, shuffle=True, num_workers=workers
    )
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=32, num_workers=workers)

    model = torchvision.models.resnet18(weights=None)
    if not full:
        for parameter in model.parameters():
            parameter.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, len(train_set.classes))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    images = 0
    for _ in range(epochs):
        model.train()
        for inputs, labels in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
            images += len(labels)
        model.eval()
        with torch.no_grad():
            for inputs, labels in val_loader:
                model(inputs)
                images += len(labels)
    return images


# --- Finetune Studio ------------------------------------------------------------------------
def ours(data: Path, epochs: int, full: bool) -> int:
    from finetune_studio.engine.freezing import FreezePlan
    from finetune_studio.engine.recipe import Recipe
    from finetune_studio.engine.training import Trainer

    recipe = Recipe(
        dataset=str(data),
        backbone="resnet18",
        weights="none",
        epochs=epochs,
        batch_size=32,
        freeze=FreezePlan("none" if full else "head"),
    )
    for _ in Trainer(recipe).events():
        pass
    train = sum(1 for _ in (data / "train").rglob("*.jpg"))
    val = sum(1 for _ in (data / "val").rglob("*.jpg"))
    return (train + val) * epochs


def forward_floor(data: Path, mixed_precision: bool) -> int:
    """One forward pass over every picture, already decoded and preprocessed, in
    float32 or in the engine's mixed precision for this machine."""
    import torch
    import torchvision

    from finetune_studio.engine.backbones import get_spec
    from finetune_studio.engine.devices import autocast, autocast_dtype
    from finetune_studio.engine.images import load_for_model
    from finetune_studio.engine.preprocessing import eval_transform

    pre = get_spec("resnet18").preprocessing
    transform = eval_transform(pre)
    tensors = torch.stack(
        [transform(load_for_model(p, pre.resize_size)) for p in sorted(data.rglob("*.jpg"))]
    )
    model = torchvision.models.resnet18(weights=None).eval()
    model.to(memory_format=torch.channels_last)
    cpu = torch.device("cpu")
    started = time.perf_counter()
    with torch.inference_mode(), autocast(cpu, autocast_dtype(cpu, mixed_precision)):
        for batch in tensors.split(32):
            model(batch.contiguous(memory_format=torch.channels_last))
    return -int((time.perf_counter() - started) * 1e6)  # negative: timed inside, microseconds


CLI_ENTRY = (
    "import sys; from finetune_studio import cli; "
    "sys.argv[0] = 'finetune-studio-cli'; getattr(cli, 'run', cli.main)()"
)
"""The console script's own entry (``run``; older code had only ``main``)."""


def cli_head(data: Path, epochs: int) -> int:
    """``finetune-studio-cli train --freeze head`` from the command to the exit, with a
    new feature cache."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-c",
            CLI_ENTRY,
            "train",
            str(data),
            "--backbone",
            "resnet18",
            "--weights",
            "none",
            "--freeze",
            "head",
            "--epochs",
            str(epochs),
            "--out",
            str(Path(tmp) / "model"),
        ]
        environment = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        subprocess.run(command, check=True, env=environment, capture_output=True)
    return sum(1 for _ in data.rglob("*.jpg")) * epochs


def start_up() -> int:
    """A new process's interpreter start and the imports the CLI's train command makes,
    up to its first line of output."""
    code = (
        "import time; from finetune_studio import cli; "
        "import finetune_studio.engine.training, finetune_studio.engine.export; "
        "print(time.time(), flush=True)"
    )
    launched = time.time()
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return -int((float(output.split()[-1]) - launched) * 1e6)  # timed inside, microseconds


def decode_plain(big: Path) -> int:
    from PIL import Image

    files = sorted(big.glob("*.jpg"))
    for path in files:
        with Image.open(path) as image:
            image.convert("RGB").resize((341, 256))
    return len(files)


def decode_ours(big: Path) -> int:
    from finetune_studio.engine.images import load_for_model

    files = sorted(big.glob("*.jpg"))
    for path in files:
        load_for_model(path, 256)
    return len(files)


STAGES: dict[str, Callable[[argparse.Namespace], int]] = {
    "plain_head": lambda a: plain_recipe(a.data, a.epochs, full=False),
    "ours_head": lambda a: ours(a.data, a.epochs, full=False),
    "plain_full": lambda a: plain_recipe(a.data, a.full_epochs, full=True),
    "ours_full": lambda a: ours(a.data, a.full_epochs, full=True),
    "forward_floor": lambda a: forward_floor(a.data, mixed_precision=False),
    "forward_floor_amp": lambda a: forward_floor(a.data, mixed_precision=True),
    "start_up": lambda a: start_up(),
    "cli_head": lambda a: cli_head(a.data, a.epochs),
    "plain_phone": lambda a: plain_recipe(a.data.parent / "phone", a.epochs, full=False),
    "ours_phone": lambda a: ours(a.data.parent / "phone", a.epochs, full=False),
    "decode_plain": lambda a: decode_plain(a.data.parent / "big"),
    "decode_ours": lambda a: decode_ours(a.data.parent / "big"),
}
OURS = ("ours_head", "ours_full", "start_up", "cli_head", "ours_phone", "decode_ours")
"""The stages that run our code: timed again with ``--before``'s package."""


def run_stage(args: argparse.Namespace) -> None:
    # Imports cost seconds and are the same for everyone: keep them out of the timing.
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    from torchvision.transforms.v2 import functional  # noqa: F401

    import finetune_studio.engine.training  # noqa: F401

    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    images = STAGES[args.stage](args)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    if images < 0:  # the stage timed its own core
        seconds, images = -images / 1e6, sum(1 for _ in args.data.rglob("*.jpg"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"stage": args.stage, "images": images, "seconds": seconds, "cpu_s": cpu}
    print(json.dumps({**row, "peak_mb": peak_mb}))


def _cpu_seconds() -> float:
    """User and system time of this process and of its children that have exited
    (workers started by a fork server are its children, not ours: not counted)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer pictures and epochs")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--full-epochs", type=int, default=1)
    parser.add_argument(
        "--before", type=Path, help="a folder holding an older finetune_studio package"
    )
    parser.add_argument("--stages", help="comma-separated stages to run (default: all)")
    args = parser.parse_args()
    if args.stage:
        run_stage(args)
        return
    per_class, big, phone = (30, 2, 2) if args.quick else (100, 5, PHONE_PER_CLASS)
    if args.quick:
        args.epochs, args.full_epochs = 3, 1
    stages = args.stages.split(",") if args.stages else list(STAGES)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_dataset(data, per_class, big)
        if {"plain_phone", "ours_phone"} & set(stages):
            make_phone_dataset(Path(tmp) / "phone", phone)
        results = {}
        for stage in stages:
            versions = [("", None)]
            if args.before and stage in OURS:
                versions.append(("_before", args.before))
            for suffix, package in versions:
                row = _run(stage, data, args, package)
                results[stage + suffix] = row
                print(
                    f"  {stage + suffix:<18} {row['images']:>6} images {row['seconds']:8.1f} s "
                    f"(cpu {row['cpu_s']:6.1f} s) {row['images'] / row['seconds']:8.1f} "
                    f"images/s  peak {row['peak_mb']:6.0f} MB",
                    flush=True,
                )
    report(results, per_class, args)


def _run(
    stage: str, data: Path, args: argparse.Namespace, package: Path | None
) -> dict[str, float]:
    command = [sys.executable, __file__, "--stage", stage, "--data", str(data)]
    command += ["--epochs", str(args.epochs), "--full-epochs", str(args.full_epochs)]
    environment = dict(os.environ)
    if package is not None:
        environment["PYTHONPATH"] = str(package.absolute())
    with tempfile.TemporaryDirectory() as cache:
        # Each stage starts with a new feature cache: none reuses another's features.
        environment["XDG_CACHE_HOME"] = cache
        output = subprocess.run(
            command, capture_output=True, text=True, check=True, env=environment
        ).stdout
    row: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return row


def report(results: dict[str, dict[str, float]], per_class: int, args: argparse.Namespace) -> None:
    seconds = {stage: row["seconds"] for stage, row in results.items()}

    def rate(stage: str) -> float:
        return results[stage]["images"] / results[stage]["seconds"]

    def line(label: str, target: str, value: Callable[[str], float], unit: str = "x") -> None:
        for suffix in ("", "_before"):
            try:
                figure = value(suffix)
            except KeyError:  # a stage not run
                continue
            when = " (before)" if suffix else ""
            print(f"| {label}{when} | {figure:.2f}{unit} | {target} |")

    print()
    print(
        f"Dataset: {CLASSES * per_class} pictures of {SIZE[0]}x{SIZE[1]} in {CLASSES} classes; "
        f"ResNet-18; {os.cpu_count()} CPU cores; head only {args.epochs} epochs, "
        f"full {args.full_epochs}."
    )
    from finetune_studio.engine.devices import cpu_has_native_bfloat16

    precision = "bfloat16 (native on this CPU)" if cpu_has_native_bfloat16() else "float32"
    print(f"Finetune Studio's mixed precision on this machine: {precision}.")
    print("| measure | ratio | target |\n|---|---|---|")
    line(
        f"head only, {args.epochs} epochs: plain wall time / ours",
        ">= 18x",
        lambda v: seconds["plain_head"] / seconds["ours_head" + v],
    )
    line(
        "head only: ours / one pure forward pass (float32)",
        "-",
        lambda v: seconds["ours_head" + v] / seconds["forward_floor"],
    )
    line(
        "head only: ours / one pure forward pass (same precision as ours)",
        "-",
        lambda v: seconds["ours_head" + v] / seconds["forward_floor_amp"],
    )
    line(
        "CLI head only, command to exit / (start-up + one forward pass in our precision)",
        "<= 1.5x",
        lambda v: (
            seconds["cli_head" + v] / (seconds["start_up" + v] + seconds["forward_floor_amp"])
        ),
    )
    line(
        "full fine-tuning: our throughput / plain",
        ">= 2.1x",
        lambda v: rate("ours_full" + v) / rate("plain_full"),
    )
    line(
        f"phone photos (4000x3000), head only, {args.epochs} epochs: plain wall time / ours",
        ">= 12x",
        lambda v: seconds["plain_phone"] / seconds["ours_phone" + v],
    )
    line(
        "12-megapixel JPEG decode: plain / ours",
        ">= 5x",
        lambda v: seconds["decode_plain"] / seconds["decode_ours" + v],
    )


if __name__ == "__main__":
    main()
