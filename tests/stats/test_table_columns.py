"""``ReadingTable.from_columns`` (the database path) accepts and refuses exactly what ``from_records`` does."""

from __future__ import annotations

import math

import numpy as np
import pytest

from readerstudy.stats import ReadingTable, ReadingTableError, build_report
from readerstudy.stats.simulate import simulate_study

COLUMNS = (
    "reader",
    "modality",
    "case",
    "truth",
    "rating",
    "label",
    "confidence",
    "anatomy",
    "style",
    "artifacts",
    "active_seconds",
    "generator",
    "replicate",
)


def columns_of(records: list[dict]) -> dict[str, list]:
    names = {name for record in records for name in record}
    return {name: [record.get(name) for record in records] for name in COLUMNS if name in names}


def test_simulated_study_gives_the_same_table_and_report_both_ways():
    records = simulate_study(readers=4, modalities=2, cases=30, repeat_share=0.1, seed=3).to_records()
    by_records = ReadingTable.from_records(records)
    by_columns = ReadingTable.from_columns(**columns_of(records))
    assert by_columns.to_records() == by_records.to_records()
    assert by_columns.readers == by_records.readers and by_columns.cases == by_records.cases
    assert build_report(by_columns).to_dict() == build_report(by_records).to_dict()


def test_numpy_columns_and_database_style_tuples_are_accepted():
    # What analysis.py passes: tuples from values_list (ints, None for unscored quality) and numpy arrays.
    table = ReadingTable.from_columns(
        reader=("ann", "ann", "bob", "bob"),
        case=(7, 8, 7, 8),
        truth=np.array([1, 0, 1, 0]),
        label=(1, 0, 0, 0),
        confidence=(5, 2, 1, 3),
        anatomy=(4, None, 3, None),
        modality="study",
        confidence_levels=5,
    )
    assert table.case.tolist() == ["7", "8", "7", "8"]
    assert table.modalities == ("study",)
    # ordinal_score: synthetic 5 -> 10, real 2 -> 4, real 1 -> 5, real 3 -> 3 on the 1..10 scale.
    assert table.rating.tolist() == [10.0, 4.0, 5.0, 3.0]
    assert table.anatomy[0] == 4 and math.isnan(table.anatomy[1])
    assert table.style is None and table.generator is None and table.active_seconds is None


def test_text_is_stripped_and_blank_modality_defaults():
    table = ReadingTable.from_columns(
        reader=[" a ", "b"], case=["x ", " x"], truth=["1", " 1"], rating=["3", 4.0], modality=["", None]
    )
    assert table.reader.tolist() == ["a", "b"]
    assert table.case.tolist() == ["x", "x"]
    assert table.modality.tolist() == ["all", "all"]


GOOD = {"reader": "a", "case": "x", "truth": 1, "rating": 3}


@pytest.mark.parametrize(
    ("bad", "extra_kwargs", "message"),
    [
        ({"reader": " "}, {}, "record 2: missing reader"),
        ({"case": None}, {}, "record 2: missing case"),
        ({"truth": None}, {}, "record 2: missing truth"),
        ({"truth": "yes"}, {}, "record 2: truth 'yes' is not a number"),
        ({"truth": 2}, {}, r"record 2: truth must be 0 \(real\) or 1 \(synthetic\)"),
        ({"rating": math.inf}, {}, "record 2: rating inf is not a finite number"),
        ({"rating": "nan"}, {}, "record 2: rating 'nan' is not a finite number"),
        ({"rating": None}, {}, "record 2: missing rating"),
        ({"rating": None, "label": 1, "confidence": 9}, {"confidence_levels": 5}, "confidence must lie in 1..5"),
        ({"rating": None, "label": 3, "confidence": 2}, {"confidence_levels": 5}, "label must be 0 .real. or 1"),
        ({"anatomy": -1}, {}, "record 2: anatomy must be a non-negative number"),
        ({"replicate": 1.5}, {}, r"record 2: replicate must be 0, 1, 2, \.\.\., got 1.5"),
        ({"case": "w", "truth": 0}, {}, "record 2: reader .a. already read case .w."),
    ],
)
def test_malformed_columns_raise_what_from_records_raises(bad, extra_kwargs, message):
    first = {"reader": "a", "case": "w", "truth": 0, "rating": 1}
    if "label" in bad or "confidence" in bad:
        first = {**first, "label": 0, "confidence": 1}
    second = {**GOOD, **bad}
    records = [first, second]
    with pytest.raises(ReadingTableError, match=message) as from_records:
        ReadingTable.from_records(records, **extra_kwargs)
    with pytest.raises(ReadingTableError, match=message) as from_columns:
        ReadingTable.from_columns(**columns_of(records), **extra_kwargs)
    assert str(from_columns.value) == str(from_records.value)
    assert from_columns.value.line == from_records.value.line == 2


def test_label_on_some_rows_only_is_refused():
    records = [{**GOOD, "label": 1}, {**GOOD, "case": "y", "truth": 0}]
    with pytest.raises(ReadingTableError, match="record 2: missing label: give a label on every row or on none"):
        ReadingTable.from_columns(**columns_of(records))


def test_lines_name_the_source_and_empty_or_ragged_columns_are_refused():
    with pytest.raises(ReadingTableError, match="line 12: missing case"):
        ReadingTable.from_columns(
            reader=["a", "a"], case=["x", ""], truth=[1, 1], rating=[1, 2], lines=[11, 12], unit="line"
        )
    with pytest.raises(ReadingTableError, match="empty"):
        ReadingTable.from_columns(reader=[], case=[], truth=[])
    with pytest.raises(ReadingTableError, match="column 'case' has 1 values, expected 2"):
        ReadingTable.from_columns(reader=["a", "b"], case=["x"], truth=[1, 1], rating=[1, 2])


def test_report_survives_a_study_where_no_synthetic_image_fooled_anyone():
    # Seen live: early in a study every synthetic reading was a correct call, and the realism fit's intercept
    # ran to -infinity until its Hessian was singular. Everyone-or-no-one fooled now has its closed form.
    from readerstudy.stats.realism import fit_rasch

    table = ReadingTable.from_columns(
        reader=["a", "a", "b", "b", "b"],
        case=["s1", "r1", "s1", "s2", "r1"],
        truth=[1, 0, 1, 1, 0],
        label=[1, 0, 1, 1, 1],
        confidence=[3, 2, 1, 4, 2],
        confidence_levels=5,
    )
    realism = build_report(table).realism
    assert [image.fooled for image in realism.images] == [0, 0]
    assert realism.converged and realism.intercept == -math.inf
    assert [image.adjusted_fooled_probability for image in realism.images] == [0.0, 0.0]
    fooled_always = fit_rasch([0, 1], [0, 0], [1, 1], n_images=2, n_readers=1)
    assert fooled_always.intercept == math.inf and not fooled_always.image_effects.any()
