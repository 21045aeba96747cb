"""Prompt lists for generation batches: from typed lines, from a CSV column, or from a caption template.

A batch such as "200 PA chest X-rays, half 'No findings', half 'small right pleural effusion'" is written as

    findings = parse_counts("100 x No findings, 100 x small right pleural effusion")
    template = "view_position = {view}. modality = {modality}. {finding}"
    counts = expand_template(template, {"view": "PA", "modality": "CR", "finding": findings})
    prompts = repeat_prompts(counts, interleave=True)

Each field takes one value, a list of values (every combination is generated once), or values with counts (the
counts multiply). Plain Python, no ML libraries.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MAX_PROMPTS = 100_000

_COUNT_ITEM = re.compile(r"^\s*(?P<count>\d+)\s*[x×*]\s*(?P<text>.+?)\s*$", re.IGNORECASE | re.DOTALL)
# Items are separated by newlines or semicolons, or by a comma followed by the next "<count> x"; a comma
# inside a finding ("effusion, no pneumothorax") is kept.
_COUNT_SEPARATOR = re.compile(r"\s*(?:\n|;|,(?=\s*\d+\s*[x×*]\s))\s*", re.IGNORECASE)


class PromptError(ValueError):
    """A prompt source or template that cannot give prompts; the message says why."""


@dataclass(frozen=True)
class PromptCount:
    """One prompt and how many images to generate from it."""

    prompt: str
    count: int


FieldValues = str | Sequence[str] | Mapping[str, int] | Sequence[PromptCount]


def _check_total(total: int) -> None:
    if total > MAX_PROMPTS:
        raise PromptError(f"That makes {total} prompts; a batch can have at most {MAX_PROMPTS}.")


def prompts_from_list(lines: str | Iterable[str]) -> list[str]:
    """Prompts from text (one per line) or a list; surrounding blanks and empty lines are dropped."""
    items = lines.splitlines() if isinstance(lines, str) else list(lines)
    prompts = [str(item).strip() for item in items if str(item).strip()]
    if not prompts:
        raise PromptError("No prompts given: enter at least one non-empty line.")
    _check_total(len(prompts))
    return prompts


def _read_text(source: Path | str | IO[str] | IO[bytes]) -> tuple[str, str]:
    """The text of a CSV source and a name for messages; files are decoded as UTF-8 (with or without BOM)."""
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            data: str | bytes = path.read_bytes()
        except OSError as error:
            raise PromptError(f"CSV file {path} cannot be read: {error.strerror or error}.") from error
        name = str(path)
    else:
        data = source.read()
        name = getattr(source, "name", None) or "the uploaded CSV file"
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise PromptError(f"{name} is not UTF-8 text: {error}.") from error
    return data.lstrip("\ufeff"), name


def prompts_from_csv(source: Path | str | IO[str] | IO[bytes], column: str) -> list[str]:
    """The non-empty values of `column` (e.g. report impressions) in a CSV file with a header row.

    The delimiter (comma, semicolon or tab) is detected. Raises PromptError for an empty file, a missing column
    (naming the columns there are) or a column without values.
    """
    text, name = _read_text(source)
    if not text.strip():
        raise PromptError(f"{name} is empty.")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    columns = [header.strip() for header in reader.fieldnames or []]
    if column.strip() not in columns:
        listed = ", ".join(repr(header) for header in columns) or "none"
        raise PromptError(f"{name} has no column {column!r}; its columns are {listed}.")
    reader.fieldnames = columns
    try:
        values = [(row.get(column.strip()) or "").strip() for row in reader]
    except csv.Error as error:
        raise PromptError(f"{name} is not valid CSV: {error}.") from error
    prompts = [value for value in values if value]
    if not prompts:
        raise PromptError(f"Column {column!r} of {name} has no values.")
    _check_total(len(prompts))
    return prompts


def parse_counts(text: str) -> list[PromptCount]:
    """ "100 x No findings, 100 x small right pleural effusion" -> two PromptCounts (also "100 × ..." or
    one item per line)."""
    items = [item for item in _COUNT_SEPARATOR.split(text.strip()) if item.strip()]
    if not items:
        raise PromptError("No counts given: write e.g. '100 x No findings, 100 x small right pleural effusion'.")
    counts = []
    for item in items:
        found = _COUNT_ITEM.match(item)
        if found is None:
            raise PromptError(f"{item.strip()!r} is not of the form '<count> x <text>', e.g. '100 x No findings'.")
        count = int(found["count"])
        if count < 1:
            raise PromptError(f"{item.strip()!r}: a count must be at least 1.")
        counts.append(PromptCount(found["text"], count))
    _check_total(sum(count.count for count in counts))
    return counts


def template_fields(template: str) -> list[str]:
    """The field names of a template, in order of first use; PromptError for positional or formatted fields."""
    fields: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise PromptError(
            f"Template {template!r} is malformed ({error}); write literal braces as {{{{ }}}}."
        ) from error
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise PromptError(f"Template field {{{name}}} must be a name such as {{finding}}.")
        if spec or conversion:
            raise PromptError(f"Template field {{{name}}} must be plain, without a format spec or conversion.")
        if name not in fields:
            fields.append(name)
    return fields


def _field_options(name: str, values: FieldValues) -> list[PromptCount]:
    if isinstance(values, str):
        options = [PromptCount(values, 1)]
    elif isinstance(values, Mapping):
        options = [PromptCount(str(value), count) for value, count in values.items()]
    else:
        options = [value if isinstance(value, PromptCount) else PromptCount(str(value), 1) for value in values]
    if not options:
        raise PromptError(f"Template field {{{name}}} has no values.")
    for option in options:
        if isinstance(option.count, bool) or not isinstance(option.count, int) or option.count < 1:
            raise PromptError(f"Template field {{{name}}}: count {option.count!r} for {option.prompt!r} is not >= 1.")
    return options


def expand_template(template: str, fields: Mapping[str, FieldValues]) -> list[PromptCount]:
    """Every combination of the field values, filled into the template, each with the product of its counts.

    Raises PromptError naming any field the template uses but `fields` lacks, or `fields` gives but the
    template does not use (usually a typo).
    """
    names = template_fields(template)
    missing = [name for name in names if name not in fields]
    if missing:
        given = ", ".join(sorted(fields)) or "none"
        raise PromptError(
            f"Template uses unknown field(s) {', '.join('{' + name + '}' for name in missing)}; given: {given}."
        )
    unused = [name for name in fields if name not in names]
    if unused:
        raise PromptError(f"Field(s) {', '.join(unused)} are not used by the template {template!r}.")
    options = [_field_options(name, fields[name]) for name in names]
    combinations = 1
    for option_list in options:
        combinations *= len(option_list)
    _check_total(combinations)
    counts = []
    for combination in itertools.product(*options):
        prompt = template.format(**{name: option.prompt for name, option in zip(names, combination, strict=True)})
        count = 1
        for option in combination:
            count *= option.count
        counts.append(PromptCount(prompt.strip(), count))
    _check_total(sum(count.count for count in counts))
    return counts


def repeat_prompts(counts: Sequence[PromptCount], *, interleave: bool = False) -> list[str]:
    """Each prompt `count` times: in blocks (a, a, b, b) or, with `interleave`, spread evenly through the list
    (a, b, a, b; with counts 4 and 2: a, b, a, a, b, a), so that any stretch of the batch, such as the part done
    before a worker stopped, holds the prompts in proportion."""
    _check_total(sum(count.count for count in counts))
    if not interleave:
        return [count.prompt for count in counts for _ in range(count.count)]
    # The i-th of n copies goes to relative position (i + 1/2) / n; ties keep the order of `counts`.
    placed = sorted(
        ((occurrence + 0.5) / count.count, order, count.prompt)
        for order, count in enumerate(counts)
        for occurrence in range(count.count)
    )
    return [prompt for _position, _order, prompt in placed]
