"""Engine layer: the order in which the advisor measures pictures.

The advisor measures as many pictures as its time budget allows and stops where the
budget ends, so the order must make every prefix a fair sample: classes take turns,
and validation pictures keep the split's share throughout.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from ..inspection import Sample


def classes_taking_turns(samples: Sequence[Sample], seed: int) -> list[Sample]:
    """One picture of each class in turn, each class's pictures in a seeded order."""
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_class[sample.label].append(sample)
    for label, members in by_class.items():
        random.Random(f"{seed}:{label}").shuffle(members)
    rounds = max((len(members) for members in by_class.values()), default=0)
    return [
        by_class[label][turn]
        for turn in range(rounds)
        for label in sorted(by_class)
        if turn < len(by_class[label])
    ]


def interleaved(
    train: Sequence[Sample], val: Sequence[Sample], seed: int
) -> list[tuple[Sample, bool]]:
    """Training and validation pictures as (sample, is_validation), in an order whose
    every prefix is stratified by class and keeps the validation share."""
    train_order = classes_taking_turns(train, seed)
    val_order = classes_taking_turns(val, seed)
    merged: list[tuple[Sample, bool]] = []
    taken_train = taken_val = 0
    while taken_train < len(train_order) or taken_val < len(val_order):
        val_behind = taken_val < len(val_order) and (
            taken_train >= len(train_order)
            or taken_val / len(val_order) <= taken_train / len(train_order)
        )
        if val_behind:
            merged.append((val_order[taken_val], True))
            taken_val += 1
        else:
            merged.append((train_order[taken_train], False))
            taken_train += 1
    return merged
