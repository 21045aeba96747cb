"""Reading orders: seeded, stored, balanced, per reader, and stable when cases are added."""

from collections import Counter

import pytest

from readerstudy.imports import IncomingFile, cases_import
from readerstudy.models import SessionItem
from readerstudy.ordering import balanced_order, longest_run, run_limits
from readerstudy.services import reader_assign
from tests.conftest import png_bytes


@pytest.mark.parametrize("max_run", [1, 2, 3, 5])
def test_balanced_order_is_a_permutation_without_long_runs(max_run):
    classes = ["real"] * 50 + ["synthetic"] * 50
    for seed in range(20):
        order = balanced_order(classes, seed=seed, max_run=max_run)
        assert sorted(order) == list(range(100))
        assert longest_run([classes[i] for i in order]) <= max_run


def test_same_seed_same_order_and_different_seeds_differ():
    classes = ["real", "synthetic"] * 30
    first = balanced_order(classes, seed=42, max_run=3)
    assert balanced_order(classes, seed=42, max_run=3) == first
    others = {tuple(balanced_order(classes, seed=seed, max_run=3)) for seed in range(10)}
    assert len(others) == 10


def test_unequal_classes_get_run_limits_relative_to_prevalence():
    # 30 real and 3 synthetic: synthetic keeps max_run, real may run 2 * 30 / 3 = 20. One limit for both would use
    # the synthetic cases up early breaking up the reals, so the position would tell the class.
    classes = ["real"] * 30 + ["synthetic"] * 3
    assert run_limits(Counter(classes), 2) == {"real": 20, "synthetic": 2}
    for seed in range(20):
        labels = [classes[i] for i in balanced_order(classes, seed=seed, max_run=2)]
        assert Counter(labels) == Counter(classes)
        initials = "".join(label[0] for label in labels)
        assert "r" * 21 not in initials and "s" * 3 not in initials


def test_run_rule_holds_across_an_extension():
    preceding = ["real", "real", "real"]
    labels = ["real", "synthetic", "real", "synthetic"]
    for seed in range(20):
        order = balanced_order(labels, seed=seed, max_run=3, preceding=preceding)
        assert labels[order[0]] == "synthetic"


def test_order_is_not_trivially_alternating():
    classes = ["real"] * 100 + ["synthetic"] * 100
    labels = [classes[i] for i in balanced_order(classes, seed=7, max_run=4)]
    runs = Counter(longest_run(labels[i : i + 2]) for i in range(0, 199))
    assert runs[2] > 20  # repeats happen: a reader cannot predict the next class from the last one


@pytest.mark.django_db
def test_each_reader_gets_a_stored_order_from_a_stored_seed(study, reader, other_reader):
    first = reader_assign(study=study, reader=reader)
    second = reader_assign(study=study, reader=other_reader)
    assert first.seed != second.seed
    order_a = list(first.items.values_list("case_id", flat=True))
    order_b = list(second.items.values_list("case_id", flat=True))
    assert sorted(order_a) == sorted(order_b) == sorted(study.cases.values_list("id", flat=True))
    assert order_a != order_b
    # Assigning again returns the same session with the same stored order.
    again = reader_assign(study=study, reader=reader)
    assert again.pk == first.pk
    assert list(again.items.values_list("case_id", flat=True)) == order_a


@pytest.mark.django_db
def test_stored_order_is_reproducible_from_its_seed(study, reader):
    session = reader_assign(study=study, reader=reader)
    items = list(session.items.select_related("case"))
    cases = list(study.cases.order_by("id"))
    expected = balanced_order(
        [case.truth for case in cases], seed=f"{session.seed}:main:0", max_run=study.max_run_length
    )
    assert [item.case_id for item in items] == [cases[i].pk for i in expected]


@pytest.mark.django_db
def test_orders_are_balanced_in_a_large_study(make_study, reader):
    study = make_study(real=30, synthetic=30, max_run_length=2)
    session = reader_assign(study=study, reader=reader)
    labels = [item.case.truth for item in session.items.select_related("case")]
    assert longest_run(labels) <= 2


@pytest.mark.django_db
def test_adding_cases_appends_without_reordering(study, reader):
    session = reader_assign(study=study, reader=reader)
    before = list(session.items.values_list("position", "case_id"))
    report = cases_import(
        study=study,
        files=[IncomingFile(f"late-{i}.png", png_bytes(9000 + i)) for i in range(3)],
        truth="synthetic",
    )
    assert len(report.imported) == 3
    after = list(session.items.order_by("position").values_list("position", "case_id"))
    assert after[: len(before)] == before
    assert len(after) == len(before) + 3
    assert [p for p, _ in after] == list(range(len(after)))


@pytest.mark.django_db
def test_practice_block_comes_first(make_study, reader):
    study = make_study(practice=2)
    session = reader_assign(study=study, reader=reader)
    flags = list(session.items.order_by("position").values_list("is_practice", flat=True))
    assert flags[:2] == [True, True]
    assert not any(flags[2:])
    assert SessionItem.objects.filter(session=session, is_practice=True).count() == 2
