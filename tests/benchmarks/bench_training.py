"""Benchmark: Finetune Studio's engine against the plain PyTorch transfer-learning recipe.

    python tests/benchmarks/bench_training.py            # about 10 minutes on 2 CPU cores
    python tests/benchmarks/bench_training.py --quick    # a smaller run, to try it out

Builds its own dataset (7 classes of 500x375 JPEGs in train/ and val/, plus a few
4000x3000 JPEGs), then times, in one run and on the same data:

1. the plain recipe, written as a user would write it (frozen ResNet-18, new fc,
   Adam on fc, ImageFolder with RandomResizedCrop, validation every epoch), head only;
2. Finetune Studio's engine on the same task (same backbone, split and epochs);
3. the same pair for full fine-tuning (everything trainable);
4. one pure forward pass of the backbone over the dataset (the floor for head-only),
   and decoding the large JPEGs, plain PIL against ours.

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
from pathlib import Path

import numpy as np

CLASSES = 7
SIZE = (500, 375)
BIG_SIZE = (4000, 3000)


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


STAGES = {
    "plain_head": lambda a: plain_recipe(a.data, a.epochs, full=False),
    "ours_head": lambda a: ours(a.data, a.epochs, full=False),
    "plain_full": lambda a: plain_recipe(a.data, a.full_epochs, full=True),
    "ours_full": lambda a: ours(a.data, a.full_epochs, full=True),
    "forward_floor": lambda a: forward_floor(a.data, mixed_precision=False),
    "forward_floor_amp": lambda a: forward_floor(a.data, mixed_precision=True),
    "decode_plain": lambda a: decode_plain(a.data.parent / "big"),
    "decode_ours": lambda a: decode_ours(a.data.parent / "big"),
}


def run_stage(args: argparse.Namespace) -> None:
    # Imports cost seconds and are the same for everyone: keep them out of the timing.
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    from torchvision.transforms.v2 import functional  # noqa: F401

    import finetune_studio.engine.training  # noqa: F401

    started = time.perf_counter()
    images = STAGES[args.stage](args)
    seconds = time.perf_counter() - started
    if images < 0:  # the stage timed its own core
        seconds, images = -images / 1e6, sum(1 for _ in args.data.rglob("*.jpg"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps({"stage": args.stage, "images": images, "seconds": seconds, "peak_mb": peak_mb})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer pictures and epochs")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--full-epochs", type=int, default=2)
    args = parser.parse_args()
    if args.stage:
        run_stage(args)
        return
    per_class, big = (30, 2) if args.quick else (100, 5)
    if args.quick:
        args.epochs, args.full_epochs = 3, 1
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_dataset(data, per_class, big)
        results = {}
        for stage in STAGES:
            command = [
                sys.executable,
                __file__,
                "--stage",
                stage,
                "--data",
                str(data),
                "--epochs",
                str(args.epochs),
                "--full-epochs",
                str(args.full_epochs),
            ]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[stage] = json.loads(output.strip().splitlines()[-1])
            row = results[stage]
            print(
                f"  {stage:<14} {row['images']:>6} images {row['seconds']:8.1f} s "
                f"{row['images'] / row['seconds']:8.1f} images/s  peak {row['peak_mb']:6.0f} MB",
                flush=True,
            )
    report(results, per_class, args)


def report(results: dict[str, dict[str, float]], per_class: int, args: argparse.Namespace) -> None:
    def rate(stage: str) -> float:
        return results[stage]["images"] / results[stage]["seconds"]

    seconds = {stage: row["seconds"] for stage, row in results.items()}
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
    print(
        f"| head only, {args.epochs} epochs: plain wall time / ours | "
        f"{seconds['plain_head'] / seconds['ours_head']:.1f}x | >= 8x |"
    )
    print(
        f"| head only: ours / one pure forward pass (float32) | "
        f"{seconds['ours_head'] / seconds['forward_floor']:.2f}x | <= 1.3x |"
    )
    print(
        f"| head only: ours / one pure forward pass (same precision as ours) | "
        f"{seconds['ours_head'] / seconds['forward_floor_amp']:.2f}x | <= 1.3x |"
    )
    print(
        f"| full fine-tuning: our throughput / plain | "
        f"{rate('ours_full') / rate('plain_full'):.2f}x | >= 1.5x |"
    )
    print(
        f"| 12-megapixel JPEG decode: plain / ours | "
        f"{seconds['decode_plain'] / seconds['decode_ours']:.1f}x | >= 5x |"
    )


if __name__ == "__main__":
    main()
