"""Train / validation / test splits that keep each patient's images together. Plain Python, no Django.

Images of one patient are near-duplicates for a generative model: with one in training and another in the test
split, the test split measures memorisation. So the split is drawn over groups (patients, or single images when
no patient id is known), never over images.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def check_split_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """The (train, validation, test) fractions as floats, or ValueError: three finite numbers >= 0 that sum to 1,
    the training share above 0."""
    values = tuple(float(value) for value in fractions)
    if len(values) != len(SPLITS):
        raise ValueError(f"Give three split fractions (train, validation, test), not {len(values)}.")
    if not all(math.isfinite(value) and value >= 0 for value in values):
        raise ValueError(f"Split fractions must be numbers of at least 0, got {values}.")
    if not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ValueError(f"Split fractions must add up to 1, got {values} (sum {sum(values):g}).")
    if values[0] <= 0:
        raise ValueError("The training split must get a share above 0.")
    return values  # type: ignore[return-value]


def assign_splits(
    groups: Sequence[str], fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS, *, seed: int = 0
) -> list[str]:
    """The split ("train", "validation" or "test") of each item, given each item's group (e.g. its patient id).

    Every group goes to one split whole. The groups, in sorted order, are shuffled with ``random.Random(seed)``
    and then dealt largest first (a stable sort, so equal sizes keep their shuffled order), each to the split
    furthest below its target (fraction x number of items; ties go to the earlier split). A split thus overshoots
    its target by less than the group that tipped it over, and the sizes are as close to the fractions as the
    groups allow for this order. The result depends only on the groups and the seed, not on the items' order.
    """
    targets = [fraction * len(groups) for fraction in check_split_fractions(fractions)]
    sizes = Counter(groups)
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda group: -sizes[group])
    counts = [0] * len(SPLITS)
    split_of: dict[str, str] = {}
    for group in order:
        # Rounded so that float noise in the targets (0.1 x 30) cannot break a tie the wrong way.
        deficits = [round(target - count, 9) for target, count in zip(targets, counts, strict=True)]
        index = max(range(len(SPLITS)), key=lambda split: (deficits[split], -split))
        counts[index] += sizes[group]
        split_of[group] = SPLITS[index]
    return [split_of[group] for group in groups]
