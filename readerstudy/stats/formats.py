"""Reading and writing reader-study data in the formats of the standard MRMC tools.

* long CSV: one row per reading, header ``reader, modality, case, truth, rating`` plus any optional column
  of :class:`~readerstudy.stats.table.ReadingTable` (``label``, ``confidence``, ``anatomy``, ``style``,
  ``artifacts``, ``active_seconds``, ``generator``, ``replicate``); ``treatment`` is accepted for
  ``modality`` so the OR-DBM MRMC / RJafroc CSV reads too;
* iMRMC ``.imrmc`` (FDA iMRMC): free header lines, ``BEGIN DATA:``, then ``readerID,caseID,modalityID,score``
  rows and truth rows ``-1,caseID,0,truth`` (or ``truth,caseID,truth,truth``);
* RJafroc: the JAFROC Excel workbook that ``RJafroc::DfReadDataFile`` reads by default (sheets ``TRUTH``:
  CaseID, LesionID, Weight; ``FP``: ReaderID, ModalityID, CaseID, FP_Rating; ``TP``: ReaderID, ModalityID,
  CaseID, LesionID, TP_Rating), and the OR-DBM MRMC CSV that ``DfReadDataFile(format = "MRMC")`` reads
  (``Reader,Treatment,Case,Truth,Rating``).

The iMRMC and RJafroc formats carry ratings only (no calls, confidence, quality, time or hidden repeats), so
their writers export first readings' ratings. Readers refuse malformed input with
:class:`~readerstudy.stats.table.ReadingTableError` naming the 1-based line (or sheet row) at fault.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from readerstudy.stats.table import ReadingTable, ReadingTableError

# ``modality`` may be left out (one modality, "all"); every other column after ``rating`` is optional.
LONG_CSV_REQUIRED = ("reader", "case", "truth", "rating")
_ALIASES = {"treatment": "modality", "modality_id": "modality", "reader_id": "reader", "case_id": "case"}


# -- long CSV --------------------------------------------------------------------------------------
def parse_long_csv(text: str, *, confidence_levels: int | None = None) -> ReadingTable:
    """Parse a long CSV (header line, one reading per line). Unknown columns are ignored.

    ``rating`` may be blank on rows that give ``label`` and ``confidence`` when ``confidence_levels`` is
    set (see :meth:`ReadingTable.from_records`).
    """
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    while header is not None and not any(cell.strip() for cell in header):
        header = next(reader, None)
    if header is None:
        raise ReadingTableError("empty file: no header line", line=1)
    header_line = reader.line_num
    names = [_ALIASES.get(cell.strip().lower(), cell.strip().lower()) for cell in header]
    required = [name for name in LONG_CSV_REQUIRED if name != "rating" or confidence_levels is None]
    missing = [name for name in required if name not in names]
    if missing:
        raise ReadingTableError(
            f"missing column {missing[0]!r} (the header has {', '.join(repr(n) for n in names)})",
            line=header_line,
        )
    duplicated = sorted({name for name in names if name and names.count(name) > 1})
    if duplicated:
        raise ReadingTableError(f"column {duplicated[0]!r} appears twice in the header", line=header_line)
    records, lines = [], []
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(names):
            raise ReadingTableError(
                f"expected {len(names)} fields as in the header, got {len(cells)}", line=reader.line_num
            )
        records.append(dict(zip(names, cells, strict=True)))
        lines.append(reader.line_num)
    if not records:
        raise ReadingTableError("no readings after the header line", line=header_line)
    return ReadingTable.from_records(records, confidence_levels=confidence_levels, lines=lines, unit="line")


def format_long_csv(table: ReadingTable) -> str:
    """The table as a long CSV (columns in canonical order, optional ones only when present)."""
    columns = table.present_columns()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    data = [getattr(table, name) for name in columns]
    for row in zip(*data, strict=True):
        writer.writerow([csv_cell(value) for value in row])
    return buffer.getvalue()


def csv_cell(value) -> str:
    """One value as the long CSV writes it: whole floats without ".0", others by repr (exact round trip), NaN as ""."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    return str(value)


# -- iMRMC -----------------------------------------------------------------------------------------
def parse_imrmc(text: str) -> ReadingTable:
    """Parse an iMRMC input file (Gallas BD et al., FDA iMRMC; format of its ``imrmc_example_input``).

    Everything before the ``BEGIN DATA:`` line is free text. Truth rows have reader ``-1`` (or ``truth``)
    and the truth (0/1) in the score field; every case read must have exactly one truth.
    """
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise ReadingTableError("empty file", line=1)
    start = next((i for i, line in enumerate(lines) if line.strip().upper() == "BEGIN DATA:"), None)
    if start is None:
        raise ReadingTableError("no 'BEGIN DATA:' line: not an iMRMC file", line=1)
    truth: dict[str, tuple[float, int]] = {}
    readings: list[tuple[int, str, str, str, str]] = []
    for number, line in enumerate(lines[start + 1 :], start=start + 2):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 4:
            raise ReadingTableError(
                f"expected 4 fields (readerID,caseID,modalityID,score), got {len(fields)}", line=number
            )
        reader_id, case_id, modality_id, score = fields
        if not case_id:
            raise ReadingTableError("missing caseID", line=number)
        if reader_id in ("-1", "truth"):
            if score not in ("0", "1", "0.0", "1.0"):
                raise ReadingTableError(f"truth must be 0 or 1, got {score!r}", line=number)
            value = float(score)
            if case_id in truth and truth[case_id][0] != value:
                raise ReadingTableError(
                    f"case {case_id!r} has truth {int(value)} here but {int(truth[case_id][0])} on line "
                    f"{truth[case_id][1]}: a case has one truth",
                    line=number,
                )
            truth.setdefault(case_id, (value, number))
            continue
        readings.append((number, reader_id, case_id, modality_id, score))
    if not readings:
        raise ReadingTableError("no readings after 'BEGIN DATA:'", line=start + 1)
    records = []
    for number, reader_id, case_id, modality_id, score in readings:
        if case_id not in truth:
            raise ReadingTableError(f"case {case_id!r} has no truth row (-1,{case_id},0,0|1)", line=number)
        records.append(
            {
                "reader": reader_id,
                "case": case_id,
                "modality": modality_id,
                "truth": truth[case_id][0],
                "rating": score,
            }
        )
    return ReadingTable.from_records(records, lines=[r[0] for r in readings], unit="line")


def format_imrmc(table: ReadingTable, *, description: str = "Reader study exported by readerstudy.stats") -> str:
    """The first readings as an iMRMC input file (NR/N0/N1/NM header, truth rows ``-1,case,0,truth``)."""
    table = table.first_readings()
    truth = table.case_truth
    lines = [
        description.replace("\n", " "),
        "",
        f"NR: {len(table.readers)}",
        f"N0: {int((truth == 0).sum())}",
        f"N1: {int((truth == 1).sum())}",
        f"NM: {len(table.modalities)}",
        "",
        "BEGIN DATA:",
    ]
    for name in (*table.readers, *table.modalities, *table.cases):
        _check_imrmc_id(name)
    lines += [f"-1,{case},0,{int(t)}" for case, t in zip(table.cases, truth, strict=True)]
    lines += [
        f"{reader},{case},{modality},{csv_cell(rating)}"
        for reader, case, modality, rating in zip(table.reader, table.case, table.modality, table.rating, strict=True)
    ]
    return "\n".join(lines) + "\n"


def _check_imrmc_id(name: str) -> None:
    if "," in name or "\n" in name or name in ("-1", "truth"):
        raise ReadingTableError(f"identifier {name!r} cannot be written to an iMRMC file")


# -- RJafroc ---------------------------------------------------------------------------------------
def rjafroc_case_ids(table: ReadingTable) -> dict[str, int]:
    """Integer case IDs for RJafroc (which requires integers): the names themselves when they all are
    integers, otherwise 1, 2, ... in order of first appearance."""
    names = table.cases
    if all(_is_integer(name) for name in names):
        return {name: int(name) for name in names}
    return {name: index for index, name in enumerate(names, start=1)}


def _is_integer(text: str) -> bool:
    stripped = text.strip().lstrip("-")
    return stripped.isdigit() and str(int(text)) == text.strip()


def format_rjafroc_csv(table: ReadingTable) -> str:
    """First readings in the OR-DBM MRMC CSV read by ``RJafroc::DfReadDataFile(file, format = "MRMC")``:
    header ``Reader,Treatment,Case,Truth,Rating``; case IDs from :func:`rjafroc_case_ids`."""
    table = table.first_readings()
    ids = rjafroc_case_ids(table)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Reader", "Treatment", "Case", "Truth", "Rating"])
    for reader, modality, case, truth, rating in zip(
        table.reader, table.modality, table.case, table.truth, table.rating, strict=True
    ):
        writer.writerow([reader, modality, ids[case], int(truth), csv_cell(rating)])
    return buffer.getvalue()


def rjafroc_xlsx_bytes(table: ReadingTable) -> bytes:
    """First readings as a JAFROC ROC workbook for ``RJafroc::DfReadDataFile(file)`` (original format).

    ROC conventions of RJafroc's reader (``ReadJAFROCOldFormat``): TRUTH lists every case once, LesionID 0
    for real (non-diseased) cases and 1 for synthetic ones, Weight 0 and 1; FP holds the ratings of real
    cases only and TP the ratings of synthetic cases (LesionID 1). An FP row for a synthetic case would make
    RJafroc read the file as FROC. A fourth sheet ``CaseNames`` (ignored by RJafroc) maps the integer IDs
    back to case names so :func:`parse_rjafroc_xlsx` restores them.
    """
    from openpyxl import Workbook

    table = table.first_readings()
    ids = rjafroc_case_ids(table)
    workbook = Workbook()
    truth_sheet = workbook.active
    truth_sheet.title = "TRUTH"
    truth_sheet.append(["CaseID", "LesionID", "Weight"])
    for case, truth in zip(table.cases, table.case_truth, strict=True):
        truth_sheet.append([ids[case], int(truth), int(truth)])
    fp = workbook.create_sheet("FP")
    fp.append(["ReaderID", "ModalityID", "CaseID", "FP_Rating"])
    tp = workbook.create_sheet("TP")
    tp.append(["ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating"])
    for reader, modality, case, truth, rating in zip(
        table.reader, table.modality, table.case, table.truth, table.rating, strict=True
    ):
        if truth:
            tp.append([reader, modality, ids[case], 1, float(rating)])
        else:
            fp.append([reader, modality, ids[case], float(rating)])
    names = workbook.create_sheet("CaseNames")
    names.append(["CaseID", "Case"])
    for case in table.cases:
        names.append([ids[case], case])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def parse_rjafroc_xlsx(data: bytes) -> ReadingTable:
    """Read a JAFROC ROC workbook (TRUTH, FP, TP sheets; optional CaseNames) into a table."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises several unrelated types for non-workbooks
        raise ReadingTableError(f"not an Excel workbook: {error}", line=1) from None
    sheets = {name.upper(): workbook[name] for name in workbook.sheetnames}

    def rows(*names: str, columns: Sequence[str]) -> tuple[str, list[tuple[int, list]]]:
        name = next((n for n in names if n in sheets), None)
        if name is None:
            raise ReadingTableError(f"no {names[0]} sheet in the workbook", line=1)
        values = list(sheets[name].iter_rows(values_only=True))
        if not values:
            raise ReadingTableError(f"sheet {name} is empty", line=1, unit=f"sheet {name} row")
        header = [str(v).strip().lower() if v is not None else "" for v in values[0]]
        for column in columns:
            if column.lower() not in header:
                raise ReadingTableError(f"missing column {column!r}", line=1, unit=f"sheet {name} row")
        index = [header.index(column.lower()) for column in columns]
        body = [
            (number, [row[i] if i < len(row) else None for i in index])
            for number, row in enumerate(values[1:], start=2)
            if any(v is not None and str(v).strip() != "" for v in row)
        ]
        return name, body

    truth_name, truth_rows = rows("TRUTH", columns=("CaseID", "LesionID"))
    truth: dict[str, int] = {}
    for number, (case_id, lesion_id) in truth_rows:
        case = _id_text(case_id)
        if case == "" or lesion_id is None:
            raise ReadingTableError("missing CaseID or LesionID", line=number, unit=f"sheet {truth_name} row")
        value = 1 if float(lesion_id) > 0 else 0
        if case in truth and truth[case] != value:
            raise ReadingTableError(
                f"case {case!r} is listed as both real and synthetic",
                line=number,
                unit=f"sheet {truth_name} row",
            )
        truth[case] = value
    names: dict[str, str] = {}
    if "CASENAMES" in sheets:
        _, name_rows = rows("CASENAMES", columns=("CaseID", "Case"))
        names = {_id_text(case_id): _id_text(name) for _, (case_id, name) in name_rows}
    records: list[dict] = []
    sources: list[str] = []
    for sheet, columns, rating_column in (
        (("FP", "NL"), ("ReaderID", "ModalityID", "CaseID", "FP_Rating"), 3),
        (("TP", "LL"), ("ReaderID", "ModalityID", "CaseID", "TP_Rating"), 3),
    ):
        sheet_name, body = rows(*sheet, columns=columns)
        for number, values in body:
            unit = f"sheet {sheet_name} row"
            case = _id_text(values[2])
            if case not in truth:
                raise ReadingTableError(f"case {case!r} is not in the TRUTH sheet", line=number, unit=unit)
            rating = values[rating_column]
            try:
                rating = float(rating)
            except (TypeError, ValueError):
                raise ReadingTableError(f"rating {rating!r} is not a number", line=number, unit=unit) from None
            records.append(
                {
                    "reader": _id_text(values[0]),
                    "modality": _id_text(values[1]),
                    "case": names.get(case, case),
                    "truth": truth[case],
                    "rating": rating,
                }
            )
            sources.append(f"{unit} {number}")
    if not records:
        raise ReadingTableError("no ratings in the FP and TP sheets", line=1)
    try:
        return ReadingTable.from_records(records, unit="rating")
    except ReadingTableError as error:
        # Name the sheet row rather than the position in the combined list of ratings.
        where = sources[error.line - 1] if error.line else "workbook"
        raise ReadingTableError(f"{where}: {error.problem}") from None


def _id_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# -- files -----------------------------------------------------------------------------------------
def read_table(path: str | Path, *, confidence_levels: int | None = None) -> ReadingTable:
    """Read a JAFROC ``.xlsx`` workbook, an iMRMC ``.imrmc`` file or (any other name) a long CSV."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return parse_rjafroc_xlsx(path.read_bytes())
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ReadingTableError(f"not a UTF-8 text file ({error.reason})", line=1) from None
    if suffix == ".imrmc":
        return parse_imrmc(text)
    return parse_long_csv(text, confidence_levels=confidence_levels)


def write_table(table: ReadingTable, path: str | Path) -> None:
    """Write by extension: ``.imrmc`` iMRMC, ``.xlsx`` JAFROC workbook, anything else long CSV."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        path.write_bytes(rjafroc_xlsx_bytes(table))
    elif suffix == ".imrmc":
        path.write_text(format_imrmc(table), encoding="utf-8")
    else:
        path.write_text(format_long_csv(table), encoding="utf-8")
