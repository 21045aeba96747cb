"""Reading orders measured the way an adversarial reader would: does where a case sits, or whether it comes back,
say anything about its class?

Everything here is computed independently of the project (own Mann-Whitney AUC, own run counting, own exact
binomial band) over many seeded orders drawn as `services._append_items` draws them. Bounds and why:

- Each seed gives an independent order, and the algorithm puts class k at position p with probability exactly
  n_k / n. So over N seeds the number of synthetic cases at p is Binomial(N, prevalence), exactly, at every p; the
  test allows the central 99.9% family-wise band (Bonferroni over the positions). The old sequential rule had
  P(synthetic) 0.65 at case 4 of a 32:6 study and about 0 after case 24, far outside it.
- The expected position AUC of synthetic against real is exactly 0.5. Over 1,000 orders its standard error is at
  most 0.007 for these designs (38:2; 0.004 at 32:6), so 0.5 +- 0.03 is over four standard errors wide; the old
  rule gave 0.25 at 32:6 and 0.11 at 38:2.
- Whether a case is repeated is chosen without looking at its class, so the synthetic share of repeats is the
  prevalence and the AUC of "was repeated" for the class is 0.5 (the old rule: 66% synthetic at 16%, AUC 0.82).
"""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter
from functools import cache
from statistics import fmean

import pytest

from readerstudy.ordering import balanced_order, run_limits, with_hidden_repeats

ORDERS = 1000
MAX_RUN = 3


# -- independent measuring tools ----------------------------------------------------------------------------------


def auc(positives: list[float], negatives: list[float]) -> float:
    """Mann-Whitney: P(a positive scores above a negative), ties counting one half."""
    ranked = sorted(negatives)
    wins = sum(
        bisect.bisect_left(ranked, x) + (bisect.bisect_right(ranked, x) - bisect.bisect_left(ranked, x)) / 2
        for x in positives
    )
    return wins / (len(positives) * len(negatives))


def binomial_band(trials: int, p: float, alpha: float) -> tuple[int, int]:
    """Smallest [low, high] with P(X < low) <= alpha / 2 and P(X > high) <= alpha / 2 for X ~ Binomial(trials, p)."""

    def pmf(k: int) -> float:
        log = math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
        return math.exp(log + k * math.log(p) + (trials - k) * math.log1p(-p))

    low, tail = 0, pmf(0)
    while tail <= alpha / 2:
        low += 1
        tail += pmf(low)
    high, tail = trials, pmf(trials)
    while tail <= alpha / 2:
        high -= 1
        tail += pmf(high)
    return low, high


def runs(labels: list[str], *, cyclic: bool) -> dict[str, int]:
    """Longest run of each label, read as a line or as a circle (the last case followed by the first)."""
    longest: dict[str, int] = {}
    if cyclic and len(set(labels)) > 1:
        start = next(i for i in range(len(labels)) if labels[i] != labels[i - 1])
        labels = labels[start:] + labels[:start]  # begin where the class changes, so no run is cut in two
    previous, length = None, 0
    for label in labels:
        length = length + 1 if label == previous else 1
        previous = label
        longest[label] = max(longest.get(label, 0), length)
    return longest


def assert_marginals_within_band(sequences: list[list[str]], prevalence: float) -> None:
    width = len(sequences[0])
    low, high = binomial_band(len(sequences), prevalence, alpha=0.001 / width)
    synthetic_at = [sum(sequence[p] == "synthetic" for sequence in sequences) for p in range(width)]
    outside = {p: count for p, count in enumerate(synthetic_at) if not low <= count <= high}
    assert not outside, f"synthetic count per position outside [{low}, {high}] of {len(sequences)}: {outside}"


# -- orders as the service draws them -----------------------------------------------------------------------------


def _classes(real: int, synthetic: int) -> list[str]:
    return ["real"] * real + ["synthetic"] * synthetic


@cache
def _orders(real: int, synthetic: int, max_run: int = MAX_RUN) -> list[list[str]]:
    classes = _classes(real, synthetic)
    return [
        [classes[i] for i in balanced_order(classes, seed=f"reader-{seed}:main:0", max_run=max_run)]
        for seed in range(ORDERS)
    ]


DESIGNS = [(32, 6), (50, 50), (38, 2), (10, 30)]


@pytest.mark.parametrize(("real", "synthetic"), DESIGNS)
def test_position_says_nothing_about_the_class(real, synthetic):
    orders = _orders(real, synthetic)
    pooled_synthetic = [p for order in orders for p, label in enumerate(order) if label == "synthetic"]
    pooled_real = [p for order in orders for p, label in enumerate(order) if label == "real"]
    assert auc(pooled_synthetic, pooled_real) == pytest.approx(0.5, abs=0.03)
    per_order = [
        auc([p for p, x in enumerate(order) if x == "synthetic"], [p for p, x in enumerate(order) if x == "real"])
        for order in orders
    ]
    assert fmean(per_order) == pytest.approx(0.5, abs=0.03)
    assert_marginals_within_band(orders, synthetic / (real + synthetic))


@pytest.mark.parametrize(("real", "synthetic"), DESIGNS)
def test_every_case_is_equally_likely_anywhere(real, synthetic):
    # Not just the class: a given case (the first synthetic one) sits at each position with probability 1 / n.
    classes = _classes(real, synthetic)
    n = len(classes)
    first_synthetic = classes.index("synthetic")
    where = [
        balanced_order(classes, seed=f"reader-{seed}:main:0", max_run=MAX_RUN).index(first_synthetic)
        for seed in range(ORDERS)
    ]
    low, high = binomial_band(ORDERS, 1 / n, alpha=0.001 / n)
    counts = Counter(where)
    assert all(low <= counts[p] <= high for p in range(n)), counts


@pytest.mark.parametrize(("real", "synthetic"), [*DESIGNS, (7, 7), (21, 20), (30, 3)])
@pytest.mark.parametrize("max_run", [1, 2, 3])
def test_run_limits_hold_on_the_line_and_across_the_wrap(real, synthetic, max_run):
    limits = run_limits({"real": real, "synthetic": synthetic}, max_run)
    for order in _orders(real, synthetic, max_run)[:300]:
        assert Counter(order) == {"real": real, "synthetic": synthetic}
        for cyclic in (False, True):
            longest = runs(order, cyclic=cyclic)
            assert all(longest[label] <= limits[label] for label in longest), (cyclic, longest, limits)


@pytest.mark.parametrize(("real", "synthetic"), [(50, 50), (7, 7)])
def test_max_run_one_alternates_equal_classes(real, synthetic):
    for order in _orders(real, synthetic, 1)[:200]:
        assert all(a != b for a, b in zip(order, order[1:] + order[:1], strict=True))


def test_max_run_one_with_odd_totals_allows_the_majority_one_double():
    assert run_limits({"real": 21, "synthetic": 20}, 1) == {"real": 2, "synthetic": 1}
    doubles = Counter()
    for order in _orders(21, 20, 1)[:200]:
        pairs = list(zip(order, order[1:] + order[:1], strict=True))
        assert ("synthetic", "synthetic") not in pairs
        doubles[sum(pair == ("real", "real") for pair in pairs)] += 1
    assert doubles == {1: 200}  # 21 reals around 20 synthetic on a circle: exactly one pair of reals


def test_run_limits_documented_examples():
    assert run_limits({"real": 50, "synthetic": 50}, 3) == {"real": 3, "synthetic": 3}
    assert run_limits({"real": 32, "synthetic": 6}, 3) == {"real": 16, "synthetic": 3}
    assert run_limits({"real": 38, "synthetic": 2}, 3) == {"real": 57, "synthetic": 3}
    assert run_limits({"real": 10, "synthetic": 30}, 3) == {"real": 3, "synthetic": 9}
    assert run_limits({"real": 30, "synthetic": 3}, 2) == {"real": 20, "synthetic": 2}
    assert run_limits({"real": 5}, 3) == {"real": 5}  # one class: no limit
    assert run_limits({"real": 5, "synthetic": 0}, 3) == {"real": 5}
    assert run_limits({}, 3) == {}
    with pytest.raises(ValueError):
        run_limits({"real": 1, "synthetic": 1}, 0)


def test_large_orders_are_fast_and_valid():
    classes = _classes(1700, 300)
    limits = run_limits(Counter(classes), MAX_RUN)
    best = math.inf
    for seed in range(3):
        start = time.perf_counter()
        order = balanced_order(classes, seed=seed, max_run=MAX_RUN)
        best = min(best, time.perf_counter() - start)
        assert sorted(order) == list(range(2000))
        longest = runs([classes[i] for i in order], cyclic=True)
        assert all(longest[label] <= limits[label] for label in longest)
    assert best < 0.1


def test_same_inputs_and_seed_give_the_same_permutation():
    classes = _classes(32, 6)
    assert balanced_order(classes, seed="abc:main:0", max_run=3) == balanced_order(
        classes, seed="abc:main:0", max_run=3
    )
    assert balanced_order(classes, seed=5, max_run=3, preceding=["synthetic"]) == balanced_order(
        classes, seed=5, max_run=3, preceding=["synthetic"]
    )
    assert len({tuple(balanced_order(classes, seed=seed, max_run=3)) for seed in range(50)}) == 50


def test_an_extension_keeps_the_limit_across_the_join():
    classes = _classes(32, 6)
    limits = run_limits(Counter(classes), 3)
    for preceding in (["real", "synthetic", "synthetic", "synthetic"], ["synthetic"] + ["real"] * 10):
        last = preceding[-1]
        trailing = len(preceding) - max(i for i, x in enumerate(preceding) if x != last) - 1
        for seed in range(200):
            order = [classes[i] for i in balanced_order(classes, seed=seed, max_run=3, preceding=preceding)]
            leading = next((i for i, x in enumerate(order) if x != last), len(order))
            assert trailing + leading <= limits[last]


# -- hidden repeats -----------------------------------------------------------------------------------------------


@cache
def _blocks(count: int, real: int = 33, synthetic: int = 7) -> list[tuple[list[str], list[tuple[int, int]]]]:
    classes = _classes(real, synthetic)
    drawn = []
    for seed in range(2 * ORDERS):
        labels = [classes[i] for i in balanced_order(classes, seed=f"r{seed}:main:0", max_run=MAX_RUN)]
        drawn.append((labels, with_hidden_repeats(labels, count=count, seed=f"r{seed}:repeats:0", max_run=MAX_RUN)))
    return drawn


@pytest.mark.parametrize("count", [4, 8])
def test_repeats_say_nothing_about_the_class(count):
    prevalence = 7 / 40
    blocks = _blocks(count)
    repeated_labels = [labels[i] for labels, block in blocks for i, replicate in block if replicate]
    assert len(repeated_labels) == count * len(blocks)
    assert Counter(repeated_labels)["synthetic"] / len(repeated_labels) == pytest.approx(prevalence, abs=0.05)
    # "Have I seen this case before?" as a score for the class, pooled over every case of every reader.
    scores: dict[str, list[int]] = {"real": [], "synthetic": []}
    for labels, block in blocks:
        repeated = {i for i, replicate in block if replicate}
        for i, label in enumerate(labels):
            scores[label].append(int(i in repeated))
    assert auc(scores["synthetic"], scores["real"]) == pytest.approx(0.5, abs=0.03)
    # The class at every position of what the reader sees, originals and repeats together.
    assert_marginals_within_band([[labels[i] for i, _ in block] for labels, block in blocks], prevalence)


@pytest.mark.parametrize("count", [4, 8])
def test_repeats_come_late_and_lengthen_runs_by_at_most_one_each(count):
    limits = run_limits({"real": 33, "synthetic": 7}, MAX_RUN)
    for labels, block in _blocks(count):
        assert [i for i, replicate in block if not replicate] == list(range(40))
        repeats = [i for i, replicate in block if replicate]
        assert len(set(repeats)) == count and all(i < 20 for i in repeats)
        for i in repeats:
            assert block.index((i, 1)) - block.index((i, 0)) >= 20
        extra = Counter(labels[i] for i in repeats)
        longest = runs([labels[i] for i, _ in block], cyclic=False)
        assert all(longest[label] <= limits[label] + extra[label] for label in longest)


def test_repeats_are_chosen_without_looking_at_the_labels():
    for seed in range(50):
        a = with_hidden_repeats(_classes(33, 7), count=6, seed=seed, max_run=3)
        b = with_hidden_repeats(_classes(7, 33), count=6, seed=seed, max_run=3)
        c = with_hidden_repeats(["x"] * 40, count=6, seed=seed, max_run=1)
        assert a == b == c
