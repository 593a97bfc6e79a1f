"""Benchmark: does "How much should I train?" predict what the real runs give?

    python tests/benchmarks/bench_advisor.py                # digits and shapes (~30 min on 2 cores)
    python tests/benchmarks/bench_advisor.py --only digits --budget-s 60

On each dataset (the same two as ``bench_head_fit.py``: scikit-learn's handwritten
digits, far from ImageNet, and the app's drawn shapes, close to it), with the bundled
EfficientNet-Lite0 and default settings, it runs the advisor, then really trains every
plan it measured except ``none`` (add ``--everything`` for that too), and prints side
by side the advisor's estimates and the real runs' validation accuracy and wall time.
The tuned linear probe of ``bench_head_fit.py`` is printed for reference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

from bench_head_fit import VAL_FRACTION, make_digits, make_shapes, train, tuned_probe

from finetune_studio.engine.advice import Advice, Advisor
from finetune_studio.engine.freezing import FreezePlan
from finetune_studio.engine.recipe import Recipe
from support.runs import drain


def advise(recipe: Recipe, budget_s: float) -> Advice:
    advice = drain(Advisor(recipe, budget_s=budget_s).events())[1]
    assert advice is not None
    return advice


def bench(label: str, folder: Path, budget_s: float, everything: bool) -> None:
    recipe = Recipe(dataset=str(folder), val_fraction=VAL_FRACTION)  # default settings
    started = time.perf_counter()
    advice = advise(recipe, budget_s)
    advise_s = time.perf_counter() - started
    print(f"\n{label}\n")
    print(
        f"Advisor: {advise_s:.0f} s (budget {budget_s:.0f} s), measured on "
        f"{advice.sample_train} training and {advice.sample_val} validation pictures; "
        f"recommends `{advice.recommended_freeze}`.\n"
    )
    print("| plan | estimated accuracy | real accuracy | estimated time | real time | measured |")
    print("|---|---|---|---|---|---|")
    probe: float | None = None
    for plan in advice.plans:
        real_accuracy, real_s = None, None
        if plan.freeze != "none" or everything:
            result, real_s = train(recipe.replace(freeze=FreezePlan(plan.freeze)))
            assert result.evaluation
            real_accuracy = result.evaluation.accuracy
            if plan.freeze == "head":
                probe = tuned_probe(result, recipe)
        estimate = "-" if plan.estimated_accuracy is None else f"{plan.estimated_accuracy:.3f}"
        real = "not run" if real_accuracy is None else f"{real_accuracy:.3f}"
        real_time = "" if real_s is None else f"{real_s:.0f} s"
        print(
            f"| {plan.freeze} | {estimate} | {real} | {plan.estimated_seconds:.0f} s | "
            f"{real_time} | {plan.note} |"
        )
        sys.stdout.flush()
    if probe is not None:
        print(f"\nTuned linear probe (scikit-learn) on the same features: {probe:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-s", type=float, default=120.0)
    parser.add_argument("--only", choices=("digits", "shapes"))
    parser.add_argument("--everything", action="store_true", help="also train `none` for real")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if args.only in (None, "digits"):
            bench(make_digits(root / "far"), root / "far", args.budget_s, args.everything)
        if args.only in (None, "shapes"):
            bench(make_shapes(root / "near"), root / "near", args.budget_s, args.everything)


if __name__ == "__main__":
    main()
