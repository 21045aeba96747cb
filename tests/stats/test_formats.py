"""File formats: round trips through our own readers, the reference iMRMC example, and every kind of
malformed input refused with the 1-based line named."""

import numpy as np
import pytest

from readerstudy.stats.formats import (
    format_imrmc,
    format_long_csv,
    format_rjafroc_csv,
    parse_imrmc,
    parse_long_csv,
    parse_rjafroc_xlsx,
    read_table,
    rjafroc_case_ids,
    rjafroc_xlsx_bytes,
    write_table,
)
from readerstudy.stats.simulate import simulate_study
from readerstudy.stats.table import ReadingTable, ReadingTableError


def rows_of(table, columns=("reader", "modality", "case", "truth", "rating")):
    return sorted(zip(*(getattr(table, c).tolist() for c in columns), strict=True))


@pytest.fixture(scope="module")
def study():
    return simulate_study(readers=3, modalities=2, cases=24, repeat_share=0.1, seed=9)


def test_long_csv_round_trip_keeps_every_column(study):
    again = parse_long_csv(format_long_csv(study))
    assert again.present_columns() == study.present_columns()
    for name in study.present_columns():
        assert np.array_equal(getattr(again, name), getattr(study, name)), name


def test_long_csv_round_trip_through_a_file(study, tmp_path):
    write_table(study, tmp_path / "study.csv")
    assert rows_of(read_table(tmp_path / "study.csv")) == rows_of(study)


def test_imrmc_round_trip(study, tmp_path):
    write_table(study, tmp_path / "study.imrmc")
    again = read_table(tmp_path / "study.imrmc")
    assert rows_of(again) == rows_of(study.first_readings())
    text = format_imrmc(study)
    assert "BEGIN DATA:" in text and "\nNR: 3\n" in text


def test_rjafroc_workbook_round_trip_and_roc_conventions(study):
    data = rjafroc_xlsx_bytes(study)
    assert rows_of(parse_rjafroc_xlsx(data)) == rows_of(study.first_readings())
    from io import BytesIO

    from openpyxl import load_workbook

    workbook = load_workbook(BytesIO(data))
    assert workbook.sheetnames[:3] == ["TRUTH", "FP", "TP"]
    truth = list(workbook["TRUTH"].iter_rows(values_only=True))
    assert truth[0] == ("CaseID", "LesionID", "Weight")
    assert len(truth) - 1 == len(study.cases)  # one TRUTH row per case
    lesion_of = {row[0]: row[1] for row in truth[1:]}
    fp = list(workbook["FP"].iter_rows(values_only=True))
    tp = list(workbook["TP"].iter_rows(values_only=True))
    assert fp[0] == ("ReaderID", "ModalityID", "CaseID", "FP_Rating")
    assert tp[0] == ("ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating")
    # ROC: FP rows only for real cases (LesionID 0), TP rows for synthetic ones with LesionID 1.
    assert {lesion_of[row[2]] for row in fp[1:]} == {0}
    assert {lesion_of[row[2]] for row in tp[1:]} == {1} and {row[3] for row in tp[1:]} == {1}
    assert len(fp) + len(tp) - 2 == len(study.first_readings())


def test_rjafroc_csv_uses_integer_case_ids_and_reads_back(study):
    ids = rjafroc_case_ids(study)
    assert sorted(ids.values()) == list(range(1, len(study.cases) + 1))
    again = parse_long_csv(format_rjafroc_csv(study))  # header Reader,Treatment,Case,Truth,Rating
    renamed = study.first_readings()
    expected = sorted(
        (r, m, str(ids[c]), t, x)
        for r, m, c, t, x in zip(
            renamed.reader,
            renamed.modality,
            renamed.case,
            renamed.truth.tolist(),
            renamed.rating.tolist(),
            strict=True,
        )
    )
    assert rows_of(again) == expected


def test_integer_case_names_are_kept_for_rjafroc(reference):
    table = read_table(reference / "vandyke_long.csv")
    assert rjafroc_case_ids(table) == {case: int(case) for case in table.cases}


def test_reference_imrmc_example(reference):
    table = read_table(reference / "imrmc_example_input.imrmc")
    assert table.readers == ("reader1", "reader2", "reader3", "reader4", "reader5")
    assert table.modalities == ("testA", "testB")
    assert len(table.cases) == 80 and table.case_truth.sum() == 40
    assert len(table) == 800


HEADER = "reader,modality,case,truth,rating\n"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("", 1, "empty file"),
        ("reader,modality,case,truth\nr1,m,c1,1\n", 1, "missing column 'rating'"),
        ("reader,modality,truth,rating\nr1,m,1,4\n", 1, "missing column 'case'"),
        (HEADER, 1, "no readings"),
        (HEADER + "r1,m,c1,1,4\nr1,m,c2,0,abc\n", 3, "rating 'abc' is not a number"),
        (HEADER + "r1,m,c1,1,4\nr2,m,c1,0,2\n", 3, "case 'c1' has truth 0 here but truth 1 on line 2"),
        (HEADER + "r1,m,c1,1,4\nr1,m,c2,0,2\nr1,m,c1,1,5\n", 4, "reader 'r1' already read case 'c1'"),
        (HEADER + "r1,m,c1,2,4\n", 2, "truth must be 0 (real) or 1 (synthetic)"),
        (HEADER + "r1,m,c1,1,4,9\n", 2, "expected 5 fields"),
        (HEADER + "r1,m,c1,,4\n", 2, "missing truth"),
        (HEADER + ",m,c1,1,4\n", 2, "missing reader"),
        ("reader,modality,case,truth,rating,label\nr1,m,c1,1,4,1\nr1,m,c2,0,2,\n", 3, "missing label"),
    ],
)
def test_malformed_long_csv_is_refused_naming_the_line(text, line, problem):
    with pytest.raises(ReadingTableError) as caught:
        parse_long_csv(text)
    assert caught.value.line == line
    assert problem in str(caught.value)
    assert str(caught.value).startswith(f"line {line}: ")


def test_hidden_repeats_are_allowed_when_marked():
    table = parse_long_csv("reader,case,truth,rating,replicate\nr1,c1,1,4,0\nr1,c1,1,3,1\n")
    assert table.has_repeats and len(table.first_readings()) == 1
    assert table.modalities == ("all",)


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("", 1, "empty file"),
        ("header\n-1,c1,0,1\n", 1, "BEGIN DATA"),
        ("BEGIN DATA:\n-1,c1,0,1\nr1,c2,A,0.5\n", 3, "case 'c2' has no truth row"),
        ("BEGIN DATA:\n-1,c1,0,1\n-1,c1,0,0\nr1,c1,A,0.5\n", 3, "a case has one truth"),
        ("BEGIN DATA:\n-1,c1,0,1\nr1,c1,A,high\n", 3, "rating 'high' is not a number"),
        ("BEGIN DATA:\n-1,c1,0,1\nr1,c1,A\n", 3, "expected 4 fields"),
        ("BEGIN DATA:\n-1,c1,0,1\nr1,c1,A,1\nr1,c1,A,2\n", 4, "already read case 'c1'"),
    ],
)
def test_malformed_imrmc_is_refused_naming_the_line(text, line, problem):
    with pytest.raises(ReadingTableError) as caught:
        parse_imrmc(text)
    assert caught.value.line == line
    assert problem in str(caught.value)


def test_rjafroc_workbook_with_unknown_case_is_refused(study):
    from io import BytesIO

    from openpyxl import load_workbook

    workbook = load_workbook(BytesIO(rjafroc_xlsx_bytes(study)))
    workbook["FP"].append(["reader-01", "modality-1", 999, 3.0])
    buffer = BytesIO()
    workbook.save(buffer)
    with pytest.raises(ReadingTableError, match=r"sheet FP row .*: case '999' is not in the TRUTH sheet"):
        parse_rjafroc_xlsx(buffer.getvalue())


def test_from_records_names_the_record_and_computes_ratings_from_calls():
    records = [
        {"reader": "a", "case": "x", "truth": 1, "label": 1, "confidence": 3},
        {"reader": "a", "case": "y", "truth": 0, "label": 0, "confidence": 1},
    ]
    table = ReadingTable.from_records(records, confidence_levels=3)
    assert table.rating.tolist() == [6.0, 3.0]
    with pytest.raises(ReadingTableError, match="record 1: missing rating"):
        ReadingTable.from_records(records)
    with pytest.raises(ReadingTableError, match="record 1: truth 'yes' is not a number"):
        ReadingTable.from_records([{"reader": "a", "case": "x", "truth": "yes", "rating": 1}])
    with pytest.raises(ReadingTableError, match="empty"):
        ReadingTable.from_records([])
