"""The long CSV of readings: one row per analysed reading, the columns ``python -m readerstudy.stats`` reads first.

Its extra columns are ignored there, and its rows come in the order the dashboard analyses, so both give the same
numbers. Readings are streamed from the database in chunks, so an 80,000-reading study never sits in memory as
model objects.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

from readerstudy.analysis import MODALITY, READING_FIELDS, analysed_readings, rating_of
from readerstudy.models import Study
from readerstudy.stats.formats import csv_cell
from readerstudy.stats.table import ANALYSED_COLUMNS

CHUNK = 2000

# The columns python -m readerstudy.stats analyses, then context it ignores.
READINGS_CSV_COLUMNS = (
    *ANALYSED_COLUMNS,
    "call",
    "truth_class",
    "flags",
    "comment",
    "position",
    "revision",
    "created_at",
    "updated_at",
    "case_name",
)
# The analysed reading's fields (those of the dashboard's table), then the context.
_CSV_FIELDS = (
    *READING_FIELDS,
    "flags",
    "comment",
    "item__position",
    "revision",
    "created_at",
    "updated_at",
    "item__case__label",
)


def reading_rows(study: Study) -> Iterator[list]:
    """The header, then one row per analysed reading (practice excluded) in the dashboard's order, as typed
    values (numbers as numbers, missing as None) for the CSV and the workbook alike."""
    yield list(READINGS_CSV_COLUMNS)
    levels = study.confidence_levels
    rows = analysed_readings(study=study).values_list(*_CSV_FIELDS).iterator(chunk_size=CHUNK)
    for (
        reader,
        case,
        truth,
        generator,
        call,
        confidence,
        anatomy,
        style,
        artifacts,
        active_ms,
        replicate,
        flags,
        comment,
        position,
        revision,
        created_at,
        updated_at,
        case_name,
    ) in rows:
        synthetic = truth == "synthetic"
        yield [
            reader,
            MODALITY,
            case,
            int(synthetic),
            rating_of(call, confidence, levels),
            int(call == "synthetic"),
            confidence,
            anatomy,
            style,
            artifacts,
            active_ms / 1000,  # the float the dashboard divides to; csv_cell writes it to round-trip exactly
            generator if synthetic else "",
            replicate,
            call,
            truth,
            ";".join(flags or ()),
            comment,
            position + 1,
            revision,
            _timestamp(created_at),
            _timestamp(updated_at),
            case_name,
        ]


def readings_csv(study: Study) -> Iterator[bytes]:
    """The long CSV, encoded in chunks for a streaming response."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for index, row in enumerate(reading_rows(study)):
        writer.writerow(["" if value is None else csv_cell(value) for value in row])
        if index % CHUNK == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
