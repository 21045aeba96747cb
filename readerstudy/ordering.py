"""Seeded reading orders whose positions say nothing about the class, and hidden repeats that say nothing either.

A reader's order is drawn once from a stored seed and then stored, so it is reproducible and auditable (the same
inputs and seed always give the same order; string seeds work), and cases added later are appended without
reordering what the reader already has. Each guarantee below is stated as what an adversary who collects many
orders (or knows the algorithm) could measure, and holds exactly, by construction, for any class ratio.

Run limits (`run_limits`). The class with the fewest cases, m, may run `max_run` in a row; a class with n_k cases may
run max(max_run, ceil(max_run * n_k / m)): 50:50 at max_run 3 gives 3 and 3, 32:6 gives real 16 and synthetic 3,
38:2 gives 57 and 3, 10:30 gives 3 and 9, 21:20 at max_run 1 gives 2 and 1. A limit too small to close a circle
(n_k > limit_k * (n - n_k)) is raised to the smallest feasible value; with max_run >= 1 this never binds for two
classes, it is a guard. A block of one class has no limit. The limits scale with prevalence on purpose: one limit
for both classes forces the majority class to be broken up by the minority one, so the minority class ends up
wherever the majority class needs breaking, and where it ends up depends on what is left, which is how a
sequential rule leaks the class through the position.

`balanced_order`, construction. (1) Draw a cyclic class pattern that keeps every class within its limit, also
across the wrap-around from the last position to the first (a feasibility-guided sequential sampler: cut the
circle where the class changes, draw the line left to right, each next class with probability proportional to the
cases left among the classes that keep the rest completable, so it never dead-ends). (2) Rotate the pattern by a
uniformly random offset and reverse it with probability 1/2. (3) Give each class's slots to that class's cases in
a uniformly random order. Why it is blind: whatever the distribution of the pattern in (1), after (2) the class at
position p is the class at a uniform position of the pattern, so P(class k at p) = n_k / n for every p, exactly;
after (3) a given case sits at p with probability (n_k / n) * (1 / n_k) = 1 / n, so every case's position is
uniform on 0..n-1 and its expected rank is the same for both classes. The distribution of the whole class sequence
is invariant under rotation and reflection, so the chance that the classes at p and q are (k, j) depends only on
the cyclic distance between p and q; hence for any two classes P(a k-position > a j-position) over random pairs is
exactly 1/2 in expectation, i.e. the expected position AUC of synthetic against real is 0.5 for every class ratio
and run limit (tests/readerstudy/test_order_blinding.py measures it over 1,000 seeds: pooled position AUC within
0.5 +- 0.03 and P(synthetic at p) inside the binomial 99.9% band around prevalence at every p, at 32:6, 50:50, 38:2
and 10:30). What remains visible, by design, is the run rule itself: no run of class k is longer than its limit,
neither on the line nor across the wrap.

Extensions (`preceding`). When cases are appended to a stored order, the block's own pattern is drawn as above
and the rotation/reflection is chosen uniformly among those whose first run, joined to the trailing run of
`preceding`, keeps that class's limit (any, if none does). This is the only place the rule conditions on earlier
classes: in an appended block the first few positions are a little less likely to continue the class the reader
just saw. Hidden repeats are only ever placed in a reader's first block, which has no `preceding`.

`with_hidden_repeats`. The repeated cases are a simple random sample of the first-half indices 0..n//2-1 (at most
n // 2 of them), drawn without looking at the labels, and each second showing goes to a uniformly random slot at
least ceil(n / 2) positions after its first showing, again without looking at the labels. So whether a case is
repeated is independent of its class given the (already blind) order: P(synthetic | repeated) = prevalence, the
"have I seen this before?" cue has AUC 0.5 for the class, and the class at every position of the final sequence,
originals and repeats together, still has the prevalence as its marginal. Repeats do not re-check the run rule
(doing so would make placement depend on class); inserting one case lengthens at most one run by one, so a run
of class k in the final sequence is at most limit_k plus the number of repeats of class k.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Mapping, Sequence


def run_limits(counts: Mapping[Hashable, int], max_run: int) -> dict[Hashable, int]:
    """Longest allowed run of each class with at least one case, relative to its prevalence (see the module).

    The class with fewest cases gets `max_run`, a class with n_k cases max(max_run, ceil(max_run * n_k / m)),
    raised where needed so the limits can be kept on a circle; a single class gets its own count (no limit).
    """
    if max_run < 1:
        raise ValueError("max_run must be at least 1")
    present = {label: count for label, count in counts.items() if count > 0}
    if len(present) <= 1:
        return dict(present)
    total = sum(present.values())
    fewest = min(present.values())
    limits = {}
    for label, count in present.items():
        limit = max(max_run, math.ceil(max_run * count / fewest))
        limits[label] = max(limit, math.ceil(count / (total - count)))  # closes a circle: count <= limit * others
    return limits


def balanced_order(
    classes: Sequence[Hashable],
    *,
    seed: int | str,
    max_run: int,
    preceding: Sequence[Hashable] = (),
) -> list[int]:
    """Return a permutation of `range(len(classes))` whose class runs keep `run_limits`, position blind to class.

    `classes[i]` is the class of case i; the result lists case indices in reading order. `preceding` holds the
    classes already placed before these items (when extending a stored order): the join keeps the limit of the
    class it continues whenever some rotation of the drawn pattern allows it. The same inputs and seed always give
    the same permutation.
    """
    if max_run < 1:
        raise ValueError("max_run must be at least 1")
    rng = random.Random(seed)
    pools: dict[Hashable, list[int]] = {}
    for index, label in enumerate(classes):
        pools.setdefault(label, []).append(index)
    labels = sorted(pools, key=repr)  # a fixed label order keeps the draw reproducible
    limits = run_limits({label: len(pools[label]) for label in labels}, max_run)
    n = len(classes)
    if n == 0:
        return []

    pattern = _cyclic_pattern(labels, {label: len(pools[label]) for label in labels}, limits, rng)

    run_label, run_length = _trailing_run(preceding)
    if run_label in limits and len(labels) > 1:
        fitting = [
            (offset, reverse)
            for reverse in (False, True)
            for offset, length in enumerate(_leading_runs(_turn(pattern, 0, reverse), run_label))
            if length == 0 or run_length + length <= limits[run_label]
        ]
        offset, reverse = rng.choice(fitting) if fitting else (rng.randrange(n), rng.random() < 0.5)
    else:
        offset, reverse = rng.randrange(n), rng.random() < 0.5
    slots = _turn(pattern, offset, reverse)

    for label in labels:
        rng.shuffle(pools[label])
    return [pools[label].pop() for label in slots]


def _turn(pattern: Sequence[Hashable], offset: int, reverse: bool) -> list[Hashable]:
    """The cyclic `pattern`, reversed if asked, then read from `offset` on."""
    sequence = list(reversed(pattern)) if reverse else list(pattern)
    return sequence[offset:] + sequence[:offset]


def _leading_runs(pattern: Sequence[Hashable], label: Hashable) -> list[int]:
    """For each offset, how many `label`s the cyclic `pattern` read from that offset starts with (not all `label`)."""
    n = len(pattern)
    runs = [0] * n
    length = 0
    for index in range(2 * n - 1, -1, -1):  # twice round, backwards, so every run is seen whole
        length = length + 1 if pattern[index % n] == label else 0
        if index < n:
            runs[index] = length
    return runs


def _cyclic_pattern(
    labels: Sequence[Hashable], counts: Mapping[Hashable, int], limits: Mapping[Hashable, int], rng: random.Random
) -> list[Hashable]:
    """A class sequence with `counts` of each label whose runs keep `limits`, also across the wrap-around.

    With two or more classes a valid circle has a place where the class changes; cut it there, so the line starts
    with some class `first` and must end with another one. The line is drawn left to right, each next class with
    probability proportional to its cases left, among the classes after which `_completable` still holds.
    """
    if len(labels) == 1:
        return [labels[0]] * counts[labels[0]]
    left = dict(counts)
    total = sum(left.values())
    pattern: list[Hashable] = []
    first: Hashable | None = None
    run_label: Hashable | None = None
    run_length = 0
    while total:
        candidates, weights = [], []
        for label in labels:
            if not left[label]:
                continue
            length = run_length + 1 if label == run_label else 1
            if length > limits[label]:
                continue
            left[label] -= 1
            if _completable(left, total - 1, label, length, label if first is None else first, limits):
                candidates.append(label)
                weights.append(left[label] + 1)
            left[label] += 1
        if not candidates:  # cannot happen when the limits are feasible (see `_completable`); kept as a guard
            candidates = [label for label in labels if left[label]]
            weights = [left[label] for label in candidates]
        label = rng.choices(candidates, weights=weights)[0]
        if first is None:
            first = label
        pattern.append(label)
        left[label] -= 1
        total -= 1
        run_length = run_length + 1 if label == run_label else 1
        run_label = label
    return pattern


def _completable(
    left: Mapping[Hashable, int],
    total: int,
    run_label: Hashable,
    run_length: int,
    first: Hashable,
    limits: Mapping[Hashable, int],
) -> bool:
    """Whether the cases `left` can follow a line that ends in a run of `run_length` x `run_label`, with every run
    within its limit and the last case not of class `first` (so the line closes into a valid circle).

    Class k with c cases left and o others left fits into at most o + 1 blocks (between and around the others),
    the block right after the current run shortened by it; class `first` gets only o blocks, since its last block
    must be followed by some other case. These counts are also sufficient (checked exhaustively against a search
    for two and three classes, up to 5 cases each and limits up to 3), so the sampler never dead-ends.
    """
    if total == 0:
        return run_label != first
    for label, count in left.items():
        if not count:
            continue
        blocks = total - count + (0 if label == first else 1)
        if count > limits[label] * blocks - (run_length if label == run_label else 0):
            return False
    return True


def with_hidden_repeats(
    labels: Sequence[Hashable], *, count: int, seed: int | str, max_run: int
) -> list[tuple[int, int]]:
    """Return an ordered block with hidden repeats as (index into `labels`, replicate) pairs.

    `labels` are the classes of an already shuffled block, in order. Every index appears once with replicate 0, in
    its order; `count` cases (at most n // 2) drawn uniformly from the block's first half appear a second time with
    replicate 1, each at a uniformly random slot at least ceil(n / 2) positions after its first showing. Neither
    choice looks at `labels`, so repeats are as often synthetic as the block is; `max_run` is not re-checked (each
    repeat can lengthen a run by at most one) and is accepted for the caller's sake. The same inputs and seed give
    the same block.
    """
    del max_run  # see the docstring: checking runs here would make placement depend on class
    n = len(labels)
    rng = random.Random(seed)
    gap = (n + 1) // 2
    sequence = [(index, 0) for index in range(n)]
    # Every slot drawn is >= index + gap >= ceil(n / 2) > index, so the first half (all repeated originals) never
    # moves, and later insertions only push a repeat further from its first showing.
    for index in rng.sample(range(n // 2), max(0, min(count, n // 2))):
        sequence.insert(rng.randint(index + gap, len(sequence)), (index, 1))
    return sequence


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
