"""Seeded, class-balanced reading orders.

A reader's order is drawn once from a stored seed and then stored, so it is reproducible and auditable, and cases
added later are appended without reordering what the reader already has. "Balanced" means no run of more than
`max_run` cases of one class, whenever the class counts make that possible at all. Each next case is drawn with
probability proportional to how many cases of each class remain, among the classes whose choice keeps the rest of
the order feasible, so the order stays as random as the rule allows.

Hidden repeats (`with_hidden_repeats`) show some cases a second time, late enough that the reader has seen half
the study in between, to measure how consistent each reader is.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Hashable, Sequence


def balanced_order(
    classes: Sequence[Hashable],
    *,
    seed: int | str,
    max_run: int,
    preceding: Sequence[Hashable] = (),
) -> list[int]:
    """Return a permutation of `range(len(classes))` with no run longer than `max_run` of one class.

    `preceding` holds the classes already placed before these items (when extending a stored order), so the run
    rule holds across the join. The same inputs and seed always give the same permutation.
    """
    if max_run < 1:
        raise ValueError("max_run must be at least 1")
    rng = random.Random(seed)
    pools: dict[Hashable, list[int]] = {}
    for index, label in enumerate(classes):
        pools.setdefault(label, []).append(index)
    labels = sorted(pools, key=repr)  # a fixed label order keeps the draw reproducible
    for label in labels:
        rng.shuffle(pools[label])

    run_label, run_length = _trailing_run(preceding)
    order: list[int] = []
    while len(order) < len(classes):
        remaining = [label for label in labels if pools[label]]
        allowed = [label for label in remaining if not (label == run_label and run_length >= max_run)]
        keeps_feasible = [label for label in allowed if _feasible(pools, label, run_label, run_length, max_run)]
        candidates = keeps_feasible or allowed or remaining
        weights = [len(pools[label]) for label in candidates]
        label = rng.choices(candidates, weights=weights)[0]
        order.append(pools[label].pop())
        run_length = run_length + 1 if label == run_label else 1
        run_label = label
    return order


def _feasible(
    pools: dict[Hashable, list[int]],
    chosen: Hashable,
    run_label: Hashable | None,
    run_length: int,
    max_run: int,
) -> bool:
    """Whether, after placing one case of `chosen`, the remaining cases can still be ordered without a long run.

    A class with n cases left must fit into the gaps around the other classes' cases: at most (others + 1) blocks
    of at most `max_run`, the first block shortened by the run it continues.
    """
    counts = {label: len(pool) for label, pool in pools.items()}
    counts[chosen] -= 1
    new_run = run_length + 1 if chosen == run_label else 1
    total = sum(counts.values())
    for label, count in counts.items():
        capacity = max_run * (total - count + 1) - (new_run if label == chosen else 0)
        if count > capacity:
            return False
    return True


def with_hidden_repeats(
    labels: Sequence[Hashable], *, count: int, seed: int | str, max_run: int
) -> list[tuple[int, int]]:
    """Return an ordered block with hidden repeats as (index into `labels`, replicate) pairs.

    `labels` are the classes of an already shuffled block, in order. Every index appears once with replicate 0, in
    its order; `count` cases of the block's first half (at most that many) appear a second time with replicate 1,
    each inserted at least ceil(n / 2) positions after its first showing, at a random place that keeps every run of
    one class within `max_run` whenever some case can still come back that way. Repeated cases are drawn from the
    classes in turn, so consistency is measured on real and synthetic images alike. The same inputs and seed give
    the same block.
    """
    n = len(labels)
    rng = random.Random(seed)
    pools: dict[Hashable, list[int]] = {}
    for index in range(n // 2):
        pools.setdefault(labels[index], []).append(index)
    classes = sorted(pools, key=repr)
    for label in classes:
        rng.shuffle(pools[label])

    gap = (n + 1) // 2
    sequence = [(index, 0) for index in range(n)]
    sequence_labels = list(labels)

    def fitting_slots(label: Hashable) -> list[int]:
        # Where `label` could go without a long run. Repeats all land at or after ceil(n / 2), so the first half
        # (every original) never moves and a case at index i may come back at any slot from i + gap on.
        return [
            slot
            for slot in range(gap, len(sequence) + 1)
            if _run_through(sequence_labels, slot, label, max_run) <= max_run
        ]

    turn = 0
    for _ in range(min(count, n // 2)):
        rotation = [classes[(turn + k) % len(classes)] for k in range(len(classes))]
        choice = None
        for label in rotation:
            fits = fitting_slots(label)
            if fits:
                position = next((p for p, index in enumerate(pools[label]) if index + gap <= fits[-1]), None)
                if position is not None:
                    slots = fits[bisect.bisect_left(fits, pools[label][position] + gap) :]
                    choice = label, position, slots
                    break
        if choice is not None:
            label, position, slots = choice
        else:  # no case can come back without a long run: place one anyway, as balanced_order does
            label = next(label for label in rotation if pools[label])
            position, slots = 0, list(range(pools[label][0] + gap, len(sequence) + 1))
        index = pools[label].pop(position)
        slot = rng.choice(slots)
        sequence.insert(slot, (index, 1))
        sequence_labels.insert(slot, labels[index])
        turn = classes.index(label) + 1
    return sequence


def _run_through(labels: Sequence[Hashable], slot: int, label: Hashable, limit: int) -> int:
    """Length of the run of `label` that inserting it before position `slot` would make (counted to limit + 1)."""
    length = 1
    before = slot - 1
    while before >= 0 and labels[before] == label and length <= limit:
        length += 1
        before -= 1
    after = slot
    while after < len(labels) and labels[after] == label and length <= limit:
        length += 1
        after += 1
    return length


def longest_run(labels: Sequence[Hashable]) -> int:
    """Length of the longest run of equal consecutive labels."""
    best = current = 0
    previous: object = object()
    for label in labels:
        current = current + 1 if label == previous else 1
        best = max(best, current)
        previous = label
    return best


def _trailing_run(labels: Sequence[Hashable]) -> tuple[Hashable | None, int]:
    if not labels:
        return None, 0
    last = labels[-1]
    length = 0
    for label in reversed(labels):
        if label != last:
            break
        length += 1
    return last, length
