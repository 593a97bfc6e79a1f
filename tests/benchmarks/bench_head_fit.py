"""Benchmark: does the default head-only run reach what its features allow?

    python tests/benchmarks/bench_head_fit.py                 # digits and drawn shapes
    python tests/benchmarks/bench_head_fit.py --unfreeze      # also last:2, 6 epochs (minutes)

Builds two datasets from what ships offline: one far from ImageNet (scikit-learn's
real handwritten digits when scikit-learn is installed, else letters drawn with
Pillow's own font) and one close to it (the app's drawn shapes and textures). On
each, with the bundled EfficientNet-Lite0 and the same split, it prints side by side:

- the head trained by epochs of AdamW (the previous default: 10 epochs, lr 1e-3);
- the head fitted to its optimum (``head_fit: optimum``, today's default);
- a tuned linear probe on the same features, fitted independently (scikit-learn's
  L-BFGS logistic regression, penalty chosen on the validation pictures), when
  scikit-learn is installed;
- optionally ``last:2`` for 6 epochs.

Accuracies are on the validation pictures; times are wall time of the whole run in
this process. Feature extraction is shared through the feature cache, so the first
head-only run pays for it and the others do not: compare times within a row.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1]))

from finetune_studio.engine.freezing import FreezePlan
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training import Trainer, TrainingResult
from support.runs import drain

VAL_FRACTION = 0.25


def make_digits(root: Path) -> str:
    """scikit-learn's 1,797 8x8 digits, scaled to 64x64; drawn letters without it."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return make_letters(root)
    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = root / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image / 16 * 255).astype(np.uint8)
        picture = Image.fromarray(pixels).resize((64, 64), Image.Resampling.BILINEAR)
        picture.convert("RGB").save(folder / f"{index:04d}.png")
    return "handwritten digits (scikit-learn), 1,797 pictures, 10 classes"


def make_letters(root: Path) -> str:
    from support.glyphs import make_letter_dataset

    make_letter_dataset(root, "ABCDEFGHJK", per_class=150)
    return "letters drawn with Pillow's font, 1,500 pictures, 10 classes"


def make_shapes(root: Path) -> str:
    from finetune_studio.engine.sample_data import generate_sample_dataset

    generate_sample_dataset(root)
    return "the app's drawn shapes and textures (close to ImageNet)"


def train(recipe: Recipe) -> tuple[TrainingResult, float]:
    started = time.perf_counter()
    _, result = drain(Trainer(recipe).events())
    return result, time.perf_counter() - started


def tuned_probe(result: TrainingResult, recipe: Recipe) -> float | None:
    """scikit-learn's logistic regression on the same (cached) features."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        return None
    from finetune_studio.engine.feature_store import FeatureStore
    from support.head_features import head_features

    (train_x, train_y), (val_x, val_y), _ = head_features(recipe, FeatureStore())
    scaler = StandardScaler().fit(train_x.numpy())
    best = 0.0
    for c in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0):
        probe = LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(train_x), train_y)
        best = max(best, float(probe.score(scaler.transform(val_x), val_y)))
    return best


def row(name: str, accuracy: float | None, seconds: float | None) -> str:
    shown = "n/a" if accuracy is None else f"{accuracy:.3f}"
    timed = "" if seconds is None else f"{seconds:.1f} s"
    return f"| {name} | {shown} | {timed} |"


def bench(label: str, folder: Path, unfreeze: bool) -> None:
    base = Recipe(dataset=str(folder), val_fraction=VAL_FRACTION)  # default settings
    epochs, _ = train(base.replace(head_fit="epochs"))  # pays for the features
    optimum, optimum_s = train(base.replace(head_fit="optimum"))
    _, epochs_s = train(base.replace(head_fit="epochs"))  # features cached: a fair time
    probe = tuned_probe(optimum, base)
    assert epochs.evaluation and optimum.evaluation
    print(f"\n{label}\n")
    print("| head-only run | validation accuracy | wall time |")
    print("|---|---|---|")
    print(
        row(
            "by epochs (10 epochs, lr 1e-3: the previous default)",
            epochs.evaluation.accuracy,
            epochs_s,
        )
    )
    print(row("to its optimum (today's default)", optimum.evaluation.accuracy, optimum_s))
    print(row("tuned probe, scikit-learn", probe, None))
    if unfreeze:
        last2, last2_s = train(base.replace(freeze=FreezePlan("last:2"), epochs=6))
        assert last2.evaluation
        print(row("last:2, 6 epochs", last2.evaluation.accuracy, last2_s))
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--unfreeze", action="store_true", help="also train last:2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        far = make_digits(root / "far")
        near = make_shapes(root / "near")
        bench(far, root / "far", args.unfreeze)
        bench(near, root / "near", args.unfreeze)


if __name__ == "__main__":
    main()
