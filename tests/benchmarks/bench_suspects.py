"""Benchmark: does "Suspected wrong labels" find labels we flipped on purpose?

    python tests/benchmarks/bench_suspects.py                  # 10 % of the digits flipped
    python tests/benchmarks/bench_suspects.py --share 0.05 --share 0.2

Builds scikit-learn's 1,797 handwritten digits as a class-per-folder dataset (a
head-only run of the bundled EfficientNet-Lite0 learns them to about 95 %), moves a
known share of the pictures into a wrong class folder chosen at random, and runs the
suspects search with default settings (5 folds). It prints, per share:

- how many of the flipped pictures are among the top 2 x (flipped) suspects (the
  issue's aim: at least 80 %), and among all the pictures cleanlab flags;
- how often the suggested class is the picture's real one;
- the search's wall time with a cold feature cache and again with a warm one.

Then it times the search on 1,000 of the digits (100 per class, nothing flipped)
with a cold cache: the figure for "suspects on 1,000 pictures with the default
backbone". Times are this process's wall time on this machine; compare them within
one run.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench_head_fit import make_digits

from finetune_studio.engine.feature_store import FeatureStore
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.review.suspects import SuspectReport, SuspectSearch
from support.runs import drain


def flip(root: Path, share: float, seed: int) -> dict[str, str]:
    """Move ``share`` of the pictures into another class folder; returns
    {new path: real class}."""
    rng = random.Random(seed)
    pictures = sorted(root.rglob("*.png"))
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    flipped: dict[str, str] = {}
    for picture in rng.sample(pictures, round(share * len(pictures))):
        real = picture.parent.name
        wrong = rng.choice([c for c in classes if c != real])
        target = root / wrong / f"flipped-{picture.name}"
        picture.rename(target)
        flipped[str(target)] = real
    return flipped


def search(folder: Path, store: FeatureStore) -> tuple[SuspectReport, float]:
    started = time.perf_counter()
    recipe = Recipe(dataset=str(folder), backbone="efficientnet_lite0", device="cpu")
    _, report = drain(SuspectSearch(recipe, feature_store=store).events())
    assert report is not None
    return report, time.perf_counter() - started


def bench_share(root: Path, share: float) -> None:
    folder = root / f"digits-{share:g}"
    make_digits(folder)
    flipped = flip(folder, share, seed=1)
    store = FeatureStore(root / f"cache-{share:g}")
    report, cold = search(folder, store)
    _, warm = search(folder, store)
    names = report.class_names
    top = [s.path for s in report.suspects[: 2 * len(flipped)]]
    caught = [p for p in top if p in flipped]
    anywhere = [s for s in report.suspects if s.path in flipped]
    right = sum(names[s.suggested] == flipped[s.path] for s in anywhere)
    print(
        f"{share:>6.0%} flipped ({len(flipped)} of {report.pictures}): "
        f"{len(caught) / len(flipped):.1%} in the top {len(top)}, "
        f"{len(anywhere) / len(flipped):.1%} among all {len(report.suspects)} flagged; "
        f"suggested class right for {right / max(len(anywhere), 1):.1%} of those; "
        f"{cold:.1f} s cold, {warm:.1f} s warm"
    )


def bench_thousand(root: Path) -> None:
    folder = root / "digits-1000"
    make_digits(folder)
    for class_folder in folder.iterdir():
        for extra in sorted(class_folder.iterdir())[100:]:
            extra.unlink()
    report, cold = search(folder, FeatureStore(root / "cache-1000"))
    print(f"1,000 pictures ({report.pictures} found), cold feature cache: {cold:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share", type=float, action="append", help="share of labels to flip")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        for share in args.share or [0.1]:
            bench_share(root, share)
        bench_thousand(root)


if __name__ == "__main__":
    main()
