"""The long table of readings that every statistic in this package starts from.

One row is one reading: a reader's answer for one case in one modality. "Synthetic" is the positive class
(``truth`` 1). ``rating`` is the ordinal score (higher = more confident "synthetic") that ROC analysis uses;
when a study records a call and a confidence instead, :func:`ordinal_score` turns the pair into that score.

Columns (all the same length):

===============  =========================================================================================
``reader``       reader identifier (text)
``modality``     reading condition, e.g. a cleanup setting (text); one modality ``"all"`` when absent
``case``         case (image) identifier (text); the same case in two modalities is the same case
``truth``        1 = synthetic (positive), 0 = real
``rating``       ordinal or continuous score, higher = more confident "synthetic"
``label``        optional call: 1 = "synthetic", 0 = "real" (all rows or none)
``confidence``   optional confidence of the call, 1..K (NaN where missing)
``anatomy``,     optional image-quality scores, 1-5, higher = better (NaN where missing)
``style``,
``artifacts``
``active_seconds``  optional active reading time in seconds (NaN where missing)
``generator``    optional generator / group of a synthetic case ("" for real cases or when unknown)
``replicate``    0 for the first reading of a case by a reader in a modality, 1, 2, ... for hidden repeats
===============  =========================================================================================

Analyses use replicate-0 readings; hidden repeats only feed within-reader agreement.

One job, and so one module despite its length: the reading table, its checks and its parsers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

QUALITY_FIELDS = ("anatomy", "style", "artifacts")
OPTIONAL_FLOAT_FIELDS = ("confidence", *QUALITY_FIELDS, "active_seconds")
DEFAULT_MODALITY = "all"
# Every column of a long CSV that the analysis reads, in the canonical order (see `present_columns`).
ANALYSED_COLUMNS = (
    "reader",
    "modality",
    "case",
    "truth",
    "rating",
    "label",
    *OPTIONAL_FLOAT_FIELDS,
    "generator",
    "replicate",
)
_COLUMNS = (*ANALYSED_COLUMNS, "source_lines")


class ReadingTableError(ValueError):
    """Malformed readings. ``line`` is the 1-based line (or record) number that is wrong, when known."""

    def __init__(self, problem: str, *, line: int | None = None, unit: str = "line") -> None:
        self.problem = problem
        self.line = line
        self.unit = unit
        super().__init__(f"{unit} {line}: {problem}" if line is not None else problem)


def ordinal_score(label: Any, confidence: Any, levels: int) -> np.ndarray:
    """Combine a call and its confidence into one ordinal score on 1..2K (the confidence-extended rating).

    With confidence 1..K: "real, very sure" (label 0, confidence K) -> 1, ..., "real, unsure" (0, 1) -> K,
    "synthetic, unsure" (1, 1) -> K+1, ..., "synthetic, very sure" (1, K) -> 2K. This is the usual
    construction of a 2K-point rating scale from a binary decision plus a K-point confidence scale
    (e.g. Metz 1978, "Basic principles of ROC analysis", Semin Nucl Med 8:283), so that the empirical ROC
    curve passes through the operating point of the calls themselves (threshold between K and K+1).
    """
    label_array = np.asarray(label, dtype=float)
    confidence_array = np.asarray(confidence, dtype=float)
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    if not np.all(np.isin(label_array, (0.0, 1.0))):
        raise ValueError("label must be 0 (real) or 1 (synthetic)")
    if not np.all((confidence_array >= 1) & (confidence_array <= levels)):
        raise ValueError(f"confidence must lie in 1..{levels}")
    return np.where(label_array == 1, levels + confidence_array, levels + 1 - confidence_array)


def _first_appearance(values: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct values in order of first appearance, and each row's index into them."""
    uniques, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return tuple(str(v) for v in uniques[order]), rank[inverse.reshape(-1)]


def _text_array(values: Any, length: int | None = None) -> np.ndarray:
    array = values if isinstance(values, np.ndarray) and values.dtype.kind == "U" else np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise ReadingTableError("columns must be one-dimensional")
    if length is not None and array.size != length:
        raise ReadingTableError(f"column has {array.size} values, expected {length}")
    if array.dtype.kind == "U":
        return array  # already text: skip the per-value str() that dominates construction
    return np.array([str(v) for v in array], dtype=str) if array.size else np.array([], dtype=str)


@dataclass(frozen=True, eq=False)
class ReadingTable:
    """Columnar table of readings (see the module docstring for the columns); validated on construction.

    Build it with :meth:`from_records` (an iterable of dicts, e.g. database rows) or the readers in
    :mod:`readerstudy.stats.formats`. Construction refuses malformed input with :class:`ReadingTableError`
    naming the offending line: a truth other than 0/1, a non-finite rating, a case with two truths, a case
    with two generators, a reader who read a case twice in one modality (same replicate), an empty table.
    """

    reader: np.ndarray
    modality: np.ndarray
    case: np.ndarray
    truth: np.ndarray
    rating: np.ndarray
    label: np.ndarray | None = None
    confidence: np.ndarray | None = None
    anatomy: np.ndarray | None = None
    style: np.ndarray | None = None
    artifacts: np.ndarray | None = None
    active_seconds: np.ndarray | None = None
    generator: np.ndarray | None = None
    replicate: np.ndarray | None = None
    source_lines: np.ndarray | None = field(default=None, repr=False)
    source_unit: str = field(default="row", repr=False)

    def __post_init__(self) -> None:
        n = np.asarray(self.reader).shape[0] if np.ndim(self.reader) else 0
        if n == 0:
            raise ReadingTableError("no readings: the table is empty")
        set_ = object.__setattr__
        set_(self, "reader", _text_array(self.reader, n))
        set_(self, "modality", _text_array(self.modality, n))
        set_(self, "case", _text_array(self.case, n))
        lines = np.arange(1, n + 1) if self.source_lines is None else np.asarray(self.source_lines, dtype=int)
        set_(self, "source_lines", lines)
        truth = np.asarray(self.truth, dtype=float)
        rating = np.asarray(self.rating, dtype=float)
        self._check_length("truth", truth, n)
        self._check_length("rating", rating, n)
        bad = ~np.isin(truth, (0.0, 1.0))
        if bad.any():
            self._fail(bad, lambda i: f"truth must be 0 (real) or 1 (synthetic), got {truth[i]!r}")
        bad = ~np.isfinite(rating)
        if bad.any():
            self._fail(bad, lambda i: f"rating must be a finite number, got {rating[i]!r}")
        set_(self, "truth", truth.astype(np.int8))
        set_(self, "rating", rating)
        if self.label is not None:
            label = np.asarray(self.label, dtype=float)
            self._check_length("label", label, n)
            bad = ~np.isin(label, (0.0, 1.0))
            if bad.any():
                self._fail(bad, lambda i: f"label must be 0 (real) or 1 (synthetic) on every row, got {label[i]!r}")
            set_(self, "label", label.astype(np.int8))
        for name in OPTIONAL_FLOAT_FIELDS:
            values = getattr(self, name)
            if values is None:
                continue
            values = np.asarray(values, dtype=float)
            self._check_length(name, values, n)
            bad = np.isinf(values) | (values < 0)
            if bad.any():
                self._fail(bad, lambda i, v=values, nm=name: f"{nm} must be a non-negative number, got {v[i]!r}")
            set_(self, name, values)
        generator = None if self.generator is None else _text_array(self.generator, n)
        set_(self, "generator", generator)
        replicate = np.zeros(n, dtype=np.int64) if self.replicate is None else np.asarray(self.replicate)
        self._check_length("replicate", replicate, n)
        if replicate.dtype.kind == "f":
            bad = ~np.isfinite(replicate) | (replicate != np.round(replicate))
            if bad.any():
                self._fail(bad, lambda i: f"replicate must be a whole number, got {replicate[i]!r}")
        replicate = replicate.astype(np.int64)
        if (replicate < 0).any():
            self._fail(replicate < 0, lambda i: f"replicate must be 0 or more, got {replicate[i]}")
        set_(self, "replicate", replicate)
        self._check_cases()
        self._check_duplicates()

    # -- validation helpers -------------------------------------------------------------------------------
    def _fail(self, bad: np.ndarray, message) -> None:
        index = int(np.flatnonzero(bad)[0])
        raise ReadingTableError(message(index), line=int(self.source_lines[index]), unit=self.source_unit)

    @staticmethod
    def _check_length(name: str, values: np.ndarray, n: int) -> None:
        if values.ndim != 1 or values.shape[0] != n:
            raise ReadingTableError(f"column {name!r} has {values.size} values, expected {n}")

    def _check_cases(self) -> None:
        case_index = self.case_index
        first_row = np.full(len(self.cases), -1)
        # np.unique gives the first row of each case; every other row must agree with it.
        _, first = np.unique(case_index, return_index=True)
        first_row[case_index[first]] = first
        reference = first_row[case_index]
        conflict = self.truth != self.truth[reference]
        if conflict.any():
            i = int(np.flatnonzero(conflict)[0])
            raise ReadingTableError(
                f"case {str(self.case[i])!r} has truth {self.truth[i]} here but truth "
                f"{self.truth[reference[i]]} on {self.source_unit} {self.source_lines[reference[i]]}: "
                "a case has one truth",
                line=int(self.source_lines[i]),
                unit=self.source_unit,
            )
        if self.generator is not None:
            conflict = self.generator != self.generator[reference]
            if conflict.any():
                i = int(np.flatnonzero(conflict)[0])
                raise ReadingTableError(
                    f"case {str(self.case[i])!r} has generator {str(self.generator[i])!r} here but "
                    f"{str(self.generator[reference[i]])!r} on {self.source_unit} "
                    f"{self.source_lines[reference[i]]}",
                    line=int(self.source_lines[i]),
                    unit=self.source_unit,
                )

    def _check_duplicates(self) -> None:
        key = np.stack([self.reader_index, self.modality_index, self.case_index, self.replicate], axis=1)
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        duplicate = first[inverse] != np.arange(len(self))
        if duplicate.any():
            i = int(np.flatnonzero(duplicate)[0])
            j = int(first[inverse[i]])
            repeat_hint = "" if self.replicate[i] else " (mark hidden repeats with replicate 1, 2, ...)"
            raise ReadingTableError(
                f"reader {str(self.reader[i])!r} already read case {str(self.case[i])!r} in modality "
                f"{str(self.modality[i])!r} on {self.source_unit} {self.source_lines[j]}{repeat_hint}",
                line=int(self.source_lines[i]),
                unit=self.source_unit,
            )

    # -- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_records(
        cls,
        records: Iterable[Mapping[str, Any]],
        *,
        confidence_levels: int | None = None,
        first_line: int = 1,
        lines: Sequence[int] | None = None,
        unit: str = "record",
    ) -> ReadingTable:
        """Build a table from dict-like rows with the column names of the module docstring.

        ``rating`` may be left out (or None) on rows that carry ``label`` and ``confidence`` when
        ``confidence_levels`` (K) is given: it is then :func:`ordinal_score` of the pair. Missing optional
        values may be None or absent; ``label`` must then be missing on every row or on none.
        Error messages count records from ``first_line`` (1-based) in ``unit``s, or name ``lines[i]`` for
        record i when given (e.g. physical line numbers of a CSV file).
        """
        rows = list(records)
        if not rows:
            raise ReadingTableError("no readings: the table is empty")
        n = len(rows)
        line_numbers = np.arange(first_line, first_line + n) if lines is None else np.asarray(lines, dtype=int)
        text = {name: [""] * n for name in ("reader", "modality", "case", "generator")}
        numbers = {name: np.full(n, np.nan) for name in ("truth", "rating", "label", *OPTIONAL_FLOAT_FIELDS)}
        replicate = np.zeros(n, dtype=np.int64)
        seen = {name: False for name in ("label", "generator", *OPTIONAL_FLOAT_FIELDS)}
        for index, row in enumerate(rows):
            line = int(line_numbers[index])
            for name in ("reader", "case"):
                value = row.get(name)
                if value is None or str(value).strip() == "":
                    raise ReadingTableError(f"missing {name}", line=line, unit=unit)
                text[name][index] = str(value).strip()
            modality = row.get("modality")
            text["modality"][index] = DEFAULT_MODALITY if _blank(modality) else str(modality).strip()
            generator = row.get("generator")
            if not _blank(generator):
                text["generator"][index] = str(generator).strip()
                seen["generator"] = True
            numbers["truth"][index] = _number(row.get("truth"), "truth", line, unit, required=True)
            for name in ("label", *OPTIONAL_FLOAT_FIELDS):
                value = _number(row.get(name), name, line, unit, required=False)
                numbers[name][index] = value
                seen[name] = seen[name] or not math.isnan(value)
            rating = _number(row.get("rating"), "rating", line, unit, required=False)
            if math.isnan(rating):
                label, confidence = numbers["label"][index], numbers["confidence"][index]
                if confidence_levels is None or math.isnan(label) or math.isnan(confidence):
                    raise ReadingTableError(
                        "missing rating (give rating, or label and confidence with confidence_levels)",
                        line=line,
                        unit=unit,
                    )
                try:
                    rating = float(ordinal_score(label, confidence, confidence_levels))
                except ValueError as error:
                    raise ReadingTableError(str(error), line=line, unit=unit) from None
            numbers["rating"][index] = rating
            rep = row.get("replicate")
            if not _blank(rep):
                value = _number(rep, "replicate", line, unit, required=True)
                if value != int(value) or value < 0:
                    raise ReadingTableError(f"replicate must be 0, 1, 2, ..., got {rep!r}", line=line, unit=unit)
                replicate[index] = int(value)
        label = numbers["label"] if seen["label"] else None
        if label is not None and np.isnan(label).any():
            missing = int(np.flatnonzero(np.isnan(label))[0])
            raise ReadingTableError(
                "missing label: give a label on every row or on none",
                line=int(line_numbers[missing]),
                unit=unit,
            )
        optional = {name: numbers[name] if seen[name] else None for name in OPTIONAL_FLOAT_FIELDS}
        return cls(
            reader=np.array(text["reader"]),
            modality=np.array(text["modality"]),
            case=np.array(text["case"]),
            truth=numbers["truth"],
            rating=numbers["rating"],
            label=label,
            generator=np.array(text["generator"]) if seen["generator"] else None,
            replicate=replicate,
            source_lines=line_numbers,
            source_unit=unit,
            **optional,
        )

    @classmethod
    def from_columns(
        cls,
        *,
        reader: Sequence[Any],
        case: Sequence[Any],
        truth: Sequence[Any],
        modality: Sequence[Any] | str | None = None,
        rating: Sequence[Any] | None = None,
        label: Sequence[Any] | None = None,
        confidence: Sequence[Any] | None = None,
        anatomy: Sequence[Any] | None = None,
        style: Sequence[Any] | None = None,
        artifacts: Sequence[Any] | None = None,
        active_seconds: Sequence[Any] | None = None,
        generator: Sequence[Any] | None = None,
        replicate: Sequence[Any] | None = None,
        confidence_levels: int | None = None,
        first_line: int = 1,
        lines: Sequence[int] | None = None,
        unit: str = "record",
    ) -> ReadingTable:
        """Build a table from whole columns: the vectorised twin of :meth:`from_records`, with its rules.

        Every column holds one value per reading (``modality`` may be one text for all); a column left out
        (None) is absent, and within a column None or NaN marks a missing value. An optional column whose
        values are all missing is absent, as in :meth:`from_records`. Text values are stripped; numbers may be
        numeric or numeric text. A malformed value raises the :class:`ReadingTableError` that
        :meth:`from_records` raises for the same record. Use this for database rows (``values_list``
        transposed): it needs no dict per reading and checks whole columns at once (see benchmarks/dashboard.py).
        """
        n = len(reader)
        if n == 0:
            raise ReadingTableError("no readings: the table is empty")
        line_numbers = np.arange(first_line, first_line + n) if lines is None else np.asarray(lines, dtype=int)
        if line_numbers.shape != (n,):
            raise ReadingTableError(f"lines has {line_numbers.size} values, expected {n}")

        def fail(row: int, problem: str) -> None:
            raise ReadingTableError(problem, line=int(line_numbers[row]), unit=unit)

        def missing_text(values: np.ndarray, name: str) -> None:
            blank = values == ""
            if blank.any():
                fail(int(np.flatnonzero(blank)[0]), f"missing {name}")

        reader_text = _stripped_text(reader, "reader", n)
        missing_text(reader_text, "reader")
        case_text = _stripped_text(case, "case", n)
        missing_text(case_text, "case")
        if modality is None or isinstance(modality, str):
            modality_text = np.full(n, (modality or "").strip() or DEFAULT_MODALITY)
        else:
            modality_text = _stripped_text(modality, "modality", n)
            modality_text = np.where(modality_text == "", DEFAULT_MODALITY, modality_text)
        generator_text = None
        if generator is not None:
            generator_text = _stripped_text(generator, "generator", n)
            if not (generator_text != "").any():
                generator_text = None

        def numbers(values: Sequence[Any] | None, name: str, *, required: bool = False) -> np.ndarray:
            if values is None:
                if required:
                    fail(0, f"missing {name}")
                return np.full(n, np.nan)
            return _number_column(values, name, n, line_numbers, unit, required=required)

        truth_values = numbers(truth, "truth", required=True)
        label_values = numbers(label, "label")
        given = {
            "confidence": confidence,
            "anatomy": anatomy,
            "style": style,
            "artifacts": artifacts,
            "active_seconds": active_seconds,
        }
        optional = {name: numbers(given[name], name) for name in OPTIONAL_FLOAT_FIELDS}
        rating_values = numbers(rating, "rating")
        unrated = np.isnan(rating_values)
        if unrated.any():
            confidence_values = optional["confidence"]
            cannot = unrated & (np.isnan(label_values) | np.isnan(confidence_values))
            if confidence_levels is None or cannot.any():
                first = int(np.flatnonzero(unrated if confidence_levels is None else cannot)[0])
                fail(first, "missing rating (give rating, or label and confidence with confidence_levels)")
            pair_label, pair_confidence = label_values[unrated], confidence_values[unrated]
            bad_label = ~np.isin(pair_label, (0.0, 1.0))
            bad_confidence = ~((pair_confidence >= 1) & (pair_confidence <= confidence_levels))
            if confidence_levels < 1 or bad_label.any() or bad_confidence.any():
                rows = np.flatnonzero(unrated)
                first = 0 if confidence_levels < 1 else int(np.flatnonzero(bad_label | bad_confidence)[0])
                try:
                    ordinal_score(pair_label[first], pair_confidence[first], confidence_levels)
                except ValueError as error:
                    fail(int(rows[first]), str(error))
            rating_values[unrated] = ordinal_score(pair_label, pair_confidence, confidence_levels)
        has_label = not np.isnan(label_values).all()
        if has_label and np.isnan(label_values).any():
            fail(int(np.flatnonzero(np.isnan(label_values))[0]), "missing label: give a label on every row or on none")
        replicate_values = np.zeros(n, dtype=np.int64)
        if replicate is not None:
            raw = numbers(replicate, "replicate")
            given = ~np.isnan(raw)
            bad = given & ((raw != np.round(raw)) | (raw < 0))
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                fail(first, f"replicate must be 0, 1, 2, ..., got {_original(replicate, first)!r}")
            replicate_values[given] = raw[given].astype(np.int64)
        return cls(
            reader=reader_text,
            modality=modality_text,
            case=case_text,
            truth=truth_values,
            rating=rating_values,
            label=label_values if has_label else None,
            generator=generator_text,
            replicate=replicate_values,
            source_lines=line_numbers,
            source_unit=unit,
            **{name: values if not np.isnan(values).all() else None for name, values in optional.items()},
        )

    def to_records(self) -> list[dict[str, Any]]:
        """Rows as dicts (the inverse of :meth:`from_records`); absent optional columns are left out."""
        columns = self.present_columns()
        records = []
        for i in range(len(self)):
            row: dict[str, Any] = {}
            for name in columns:
                value = getattr(self, name)[i]
                if isinstance(value, np.generic):
                    value = value.item()
                if isinstance(value, float) and math.isnan(value):
                    value = None
                row[name] = value
            records.append(row)
        return records

    def present_columns(self) -> tuple[str, ...]:
        """Names of the columns this table has, in the canonical order."""
        names = ["reader", "modality", "case", "truth", "rating"]
        for name in ("label", *OPTIONAL_FLOAT_FIELDS, "generator"):
            if getattr(self, name) is not None:
                names.append(name)
        if self.replicate.any():
            names.append("replicate")
        return tuple(names)

    # -- views ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.reader.shape[0])

    @cached_property
    def _reader_codes(self) -> tuple[tuple[str, ...], np.ndarray]:
        return _first_appearance(self.reader)

    @cached_property
    def _modality_codes(self) -> tuple[tuple[str, ...], np.ndarray]:
        return _first_appearance(self.modality)

    @cached_property
    def _case_codes(self) -> tuple[tuple[str, ...], np.ndarray]:
        return _first_appearance(self.case)

    @property
    def readers(self) -> tuple[str, ...]:
        """Reader identifiers in order of first appearance."""
        return self._reader_codes[0]

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality identifiers in order of first appearance (see :meth:`with_modality_order`)."""
        return self._modality_codes[0]

    @property
    def cases(self) -> tuple[str, ...]:
        """Case identifiers in order of first appearance."""
        return self._case_codes[0]

    @property
    def reader_index(self) -> np.ndarray:
        return self._reader_codes[1]

    @property
    def modality_index(self) -> np.ndarray:
        return self._modality_codes[1]

    @property
    def case_index(self) -> np.ndarray:
        return self._case_codes[1]

    @cached_property
    def case_truth(self) -> np.ndarray:
        """Truth of each case in :attr:`cases` order."""
        truth = np.zeros(len(self.cases), dtype=np.int8)
        truth[self.case_index] = self.truth
        return truth

    @cached_property
    def case_generator(self) -> np.ndarray:
        """Generator of each case in :attr:`cases` order ("" when unknown)."""
        generator = np.full(len(self.cases), "", dtype=object)
        if self.generator is not None:
            generator[self.case_index] = self.generator
        return generator.astype(str)

    @property
    def has_label(self) -> bool:
        return self.label is not None

    @property
    def has_repeats(self) -> bool:
        return bool(self.replicate.any())

    def select(self, mask: np.ndarray) -> ReadingTable:
        """The rows where ``mask`` is true, as a new table (source line numbers are kept)."""
        return self.select_rows(np.flatnonzero(np.asarray(mask, dtype=bool)))

    def first_readings(self) -> ReadingTable:
        """The table without hidden repeats (replicate 0 only): what every analysis except repeats uses."""
        return self if not self.has_repeats else self.select(self.replicate == 0)

    def with_modality_order(self, order: Sequence[str]) -> ReadingTable:
        """The same readings with modalities listed in ``order`` first (unlisted ones keep their order)."""
        order = [str(m) for m in order]
        unknown = [m for m in order if m not in self.modalities]
        if unknown:
            raise ReadingTableError(f"unknown modality {unknown[0]!r}; the table has {list(self.modalities)}")
        ranked = order + [m for m in self.modalities if m not in order]
        position = {m: i for i, m in enumerate(ranked)}
        rows = np.argsort(np.array([position[m] for m in self.modality]), kind="stable")
        return self.select_rows(rows)

    def select_rows(self, rows: np.ndarray) -> ReadingTable:
        """Rows by integer index, in the given order (each row at most once)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            raise ReadingTableError("no readings: the selection is empty")
        # A subset of a validated table is valid, so skip __post_init__'s checks (they dominate the cost).
        subset = object.__new__(ReadingTable)
        for name in _COLUMNS:
            column = getattr(self, name)
            object.__setattr__(subset, name, None if column is None else column[rows])
        object.__setattr__(subset, "source_unit", self.source_unit)
        return subset


def _stripped_text(values: Any, name: str, n: int) -> np.ndarray:
    """A text column with surrounding white space removed; None and NaN become "" (missing)."""
    array = values if isinstance(values, np.ndarray) else np.asarray(values)
    if array.ndim != 1 or array.shape[0] != n:
        raise ReadingTableError(f"column {name!r} has {array.size} values, expected {n}")
    if array.dtype.kind in "OfSV":
        array = np.array(["" if _blank(v) else str(v) for v in array.tolist()], dtype=str)
    elif array.dtype.kind != "U":
        array = array.astype(str)
    return np.char.strip(array) if n else array


def _original(values: Any, index: int) -> Any:
    value = values[index]
    return value.item() if isinstance(value, np.generic) else value


def _number_column(values: Any, name: str, n: int, lines: np.ndarray, unit: str, *, required: bool) -> np.ndarray:
    """A numeric column as floats (NaN = missing) with :func:`_number`'s rules, vectorised for numbers."""
    array = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if array.ndim != 1 or array.shape[0] != n:
        raise ReadingTableError(f"column {name!r} has {array.size} values, expected {n}")
    numbers = None
    if array.dtype.kind in "biuf":
        numbers = array.astype(float)
    elif array.dtype.kind == "O" and not {str, bytes, np.str_, np.bytes_} & set(map(type, array.tolist())):
        try:
            numbers = array.astype(float)  # None -> NaN
        except (TypeError, ValueError):
            numbers = None
    if numbers is None:
        # Text or odd objects: the per-value rules of from_records, which also name the first bad value.
        return np.array(
            [_number(v, name, int(lines[i]), unit, required=required) for i, v in enumerate(array.tolist())],
            dtype=float,
        )
    infinite = np.isinf(numbers)
    if infinite.any():
        first = int(np.flatnonzero(infinite)[0])
        raise ReadingTableError(
            f"{name} {_original(array, first)!r} is not a finite number", line=int(lines[first]), unit=unit
        )
    if required and np.isnan(numbers).any():
        first = int(np.flatnonzero(np.isnan(numbers))[0])
        raise ReadingTableError(f"missing {name}", line=int(lines[first]), unit=unit)
    return numbers


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _number(value: Any, name: str, line: int, unit: str, *, required: bool) -> float:
    if _blank(value):
        if required:
            raise ReadingTableError(f"missing {name}", line=line, unit=unit)
        return math.nan
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ReadingTableError(f"{name} {value!r} is not a number", line=line, unit=unit) from None
    if math.isnan(number) or math.isinf(number):
        raise ReadingTableError(f"{name} {value!r} is not a finite number", line=line, unit=unit)
    return number
