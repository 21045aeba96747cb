"""A training manifest: the table that pairs each image of a folder with its report or prompt. Plain Python, no
Django.

A folder holds ``manifest.csv`` (comma-separated, RFC 4180 quoting, header row) or ``manifest.jsonl`` (one JSON
object per line) with the columns ``image`` (a path relative to the folder: PNG, JPEG or DICOM), ``report`` or
``prompt``, optionally ``patient_id``, ``view``, ``sex``, ``age``, and any other column, all of which a prompt
template can use. Column names are case-insensitive.

:func:`read_manifest` refuses the whole manifest (:class:`ManifestError`) only when it cannot be read as a table
with those columns; every other problem is confined to its row and reported once, with the row's line number:
a missing file, an empty report or prompt, an image listed twice (the same path, or the same content by SHA-256),
a path outside the folder (symlinks are resolved, so a link that leads out is refused too), a file that cannot be
read. Decoding the images is left to the importer, which reports an undecodable file the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")
IMAGE_COLUMN = "image"
TEXT_COLUMNS = ("report", "prompt")
OPTIONAL_COLUMNS = ("patient_id", "view", "sex", "age")

ManifestFormat = Literal["csv", "jsonl"]

_HASH_CHUNK = 1024 * 1024


class ManifestError(ValueError):
    """A manifest that cannot be used at all (no file, not a table, required columns missing); nothing of it is
    imported. The message says what to fix."""


@dataclass(frozen=True)
class ManifestRow:
    """One usable row: its image exists inside the folder and is not listed before, and it has its text.

    ``image`` is the path as written in the manifest, ``path`` the file it resolves to, ``sha256`` the digest of
    the file's bytes when the manifest was read. ``values`` holds every other column, stripped ('' when empty).
    """

    line: int
    image: str
    path: Path
    sha256: str
    size_bytes: int
    values: Mapping[str, str] = field(default_factory=dict)

    def value(self, column: str) -> str:
        return self.values.get(column, "")

    @property
    def report(self) -> str:
        return self.value("report")

    @property
    def prompt(self) -> str:
        return self.value("prompt")

    @property
    def patient_id(self) -> str:
        return self.value("patient_id")


@dataclass(frozen=True)
class ManifestProblem:
    """A row that cannot be imported, and why, in words a coordinator can act on."""

    line: int
    image: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class Manifest:
    """A manifest as read: its usable rows and its refused rows, each with its line number."""

    folder: Path
    path: Path
    format: ManifestFormat
    columns: tuple[str, ...]
    rows: tuple[ManifestRow, ...]
    problems: tuple[ManifestProblem, ...]

    @property
    def name(self) -> str:
        return self.path.relative_to(self.folder).as_posix()

    @property
    def text_column(self) -> str:
        """``"prompt"`` when the manifest gives prompts (which are then used as written), else ``"report"``."""
        return "prompt" if "prompt" in self.columns else "report"


def find_manifest(folder: Path, manifest: Path | str | None = None) -> Path:
    """The manifest file of a folder: ``manifest`` if given (relative to the folder or absolute, but inside it),
    else the folder's ``manifest.csv`` or ``manifest.jsonl``."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise ManifestError(f"There is no folder {folder}.")
    if manifest is not None:
        path = (folder / manifest).resolve()
        if not _is_inside(path, folder):
            raise ManifestError(f"The manifest {manifest} must be a file inside the folder {folder}.")
        if not path.is_file():
            raise ManifestError(f"There is no manifest file {path}.")
        if path.suffix.lower() not in (".csv", ".jsonl"):
            raise ManifestError(f"The manifest {path.name} must be a .csv or a .jsonl file.")
        return path
    found = [folder / name for name in MANIFEST_NAMES if (folder / name).is_file()]
    if not found:
        raise ManifestError(f"There is no manifest.csv or manifest.jsonl in {folder}.")
    if len(found) > 1:
        raise ManifestError(f"{folder} has both manifest.csv and manifest.jsonl: name the one to use.")
    path = found[0].resolve()
    if not _is_inside(path, folder):
        raise ManifestError(f"The manifest {found[0].name} is a link to a file outside the folder {folder}.")
    return path


def read_manifest(folder: Path, manifest: Path | str | None = None, *, max_file_bytes: int | None = None) -> Manifest:
    """Read and check a folder's manifest (see the module docstring); ManifestError if it is unusable.

    Every image file of a usable row is read once, for its SHA-256 (so that the same image under two names is
    found); files over ``max_file_bytes`` are refused without being read.
    """
    folder = Path(folder).resolve()
    path = find_manifest(folder, manifest)
    name = path.relative_to(folder).as_posix()
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ManifestError(f"{name} is not UTF-8 text ({error.reason} at byte {error.start:,}).") from error
    except OSError as error:
        raise ManifestError(f"{name} cannot be read ({error.strerror or error}).") from error
    if not text.strip():
        raise ManifestError(f"{name} is empty.")

    manifest_format: ManifestFormat = "jsonl" if path.suffix.lower() == ".jsonl" else "csv"
    parsed = _parse_jsonl(text) if manifest_format == "jsonl" else _parse_csv(text, name)
    columns, records, problems = parsed.columns, parsed.records, list(parsed.problems)
    if records:
        _check_columns(name, columns)
    elif not problems:
        raise ManifestError(f"{name} has no rows.")

    text_column = "prompt" if "prompt" in columns else "report"
    rows: list[ManifestRow] = []
    lines_by_path: dict[Path, int] = {}
    first_by_digest: dict[str, ManifestRow] = {}
    for line, values in records:
        image = values.pop(IMAGE_COLUMN, "")
        checked = _check_row(folder, line, image, values, text_column, max_file_bytes)
        if isinstance(checked, ManifestProblem):
            problems.append(checked)
            continue
        if checked.path in lines_by_path:
            problems.append(
                ManifestProblem(line, image, f"image {image!r} is already on line {lines_by_path[checked.path]}")
            )
            continue
        if (earlier := first_by_digest.get(checked.sha256)) is not None:
            problems.append(
                ManifestProblem(
                    line, image, f"image {image!r} has the same content as {earlier.image!r} on line {earlier.line}"
                )
            )
            continue
        lines_by_path[checked.path] = line
        first_by_digest[checked.sha256] = checked
        rows.append(checked)
    return Manifest(
        folder=folder,
        path=path,
        format=manifest_format,
        columns=tuple(columns),
        rows=tuple(rows),
        problems=tuple(sorted(problems, key=lambda problem: problem.line)),
    )


# --- Parsing ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    columns: list[str]
    records: list[tuple[int, dict[str, str]]]
    problems: list[ManifestProblem]


def _column_name(header: str) -> str:
    return header.strip().lower()


def _parse_csv(text: str, name: str) -> _Parsed:
    # strict: a stray quote is an error rather than a silently merged or split field.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        columns = [_column_name(value) for value in header]
        _check_header(name, columns)
        records: list[tuple[int, dict[str, str]]] = []
        problems: list[ManifestProblem] = []
        while True:
            line = reader.line_num + 1  # a quoted field can span lines: a row is named by its first line
            try:
                fields = next(reader)
            except StopIteration:
                break
            if not any(value.strip() for value in fields):
                continue
            if len(fields) != len(columns):
                image = fields[columns.index(IMAGE_COLUMN)].strip() if IMAGE_COLUMN in columns[: len(fields)] else ""
                problems.append(
                    ManifestProblem(
                        line, image, f"the row has {len(fields)} values but the header has {len(columns)} columns"
                    )
                )
                continue
            records.append((line, {column: value.strip() for column, value in zip(columns, fields, strict=True)}))
    except csv.Error as error:
        raise ManifestError(f"{name} is not valid CSV at line {reader.line_num} ({error}).") from error
    return _Parsed(columns, records, problems)


def _parse_jsonl(text: str) -> _Parsed:
    columns: list[str] = []
    records: list[tuple[int, dict[str, str]]] = []
    problems: list[ManifestProblem] = []
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as error:
            problems.append(
                ManifestProblem(line, "", f"the line is not valid JSON ({error.msg} at column {error.colno})")
            )
            continue
        if not isinstance(item, dict):
            problems.append(ManifestProblem(line, "", f"the line is a JSON {_json_kind(item)}, not an object"))
            continue
        values, refused = _jsonl_values(item)
        if refused:
            problems.append(ManifestProblem(line, values.get(IMAGE_COLUMN, ""), refused))
            continue
        for column in values:
            if column not in columns:
                columns.append(column)
        records.append((line, values))
    return _Parsed(columns, records, problems)


def _jsonl_values(item: dict) -> tuple[dict[str, str], str]:
    values: dict[str, str] = {}
    for key, value in item.items():
        column = _column_name(str(key))
        if not column:
            return values, "the object has a key that is empty"
        if column in values:
            return values, f"the object has the key {column!r} twice"
        if value is None:
            values[column] = ""
        elif isinstance(value, str):
            values[column] = value.strip()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values[column] = str(value)
        else:
            return values, f"the value of {column!r} is a JSON {_json_kind(value)}, not text or a number"
    return values, ""


def _json_kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), "number")


def _check_header(name: str, columns: list[str]) -> None:
    if any(not column for column in columns):
        raise ManifestError(f"{name} has a column without a name in its header row.")
    repeated = sorted({column for column in columns if columns.count(column) > 1})
    if repeated:
        raise ManifestError(f"{name} has the column(s) {', '.join(map(repr, repeated))} more than once.")


def _check_columns(name: str, columns: list[str]) -> None:
    listed = ", ".join(repr(column) for column in columns) or "none"
    if IMAGE_COLUMN not in columns:
        raise ManifestError(f"{name} has no 'image' column (paths relative to the folder); its columns are {listed}.")
    if not any(column in columns for column in TEXT_COLUMNS):
        raise ManifestError(f"{name} has neither a 'report' nor a 'prompt' column; its columns are {listed}.")


# --- Rows ------------------------------------------------------------------------------------------------------


def _check_row(
    folder: Path, line: int, image: str, values: dict[str, str], text_column: str, max_file_bytes: int | None
) -> ManifestRow | ManifestProblem:
    def problem(message: str) -> ManifestProblem:
        return ManifestProblem(line, image, message)

    if not image:
        return problem("the row has no image path")
    written = Path(image)
    if written.is_absolute() or image.startswith(("/", "\\")):
        return problem(f"image {image!r} is an absolute path; give it relative to the folder")
    candidate = folder / written
    resolved = candidate.resolve()
    if not _is_inside(resolved, folder):
        if _is_inside(Path(os.path.normpath(candidate)), folder):
            return problem(f"image {image!r} leads outside the folder through a symbolic link")
        return problem(f"image {image!r} is outside the folder")
    if not resolved.exists():
        return problem(f"image {image!r} does not exist")
    if not resolved.is_file():
        return problem(f"image {image!r} is not a file")
    if not values.get(text_column):
        return problem(f"the {text_column} is empty")
    size = resolved.stat().st_size
    if max_file_bytes is not None and size > max_file_bytes:
        return problem(f"image {image!r} is {size:,} bytes, more than the limit of {max_file_bytes:,} bytes")
    try:
        digest = _file_sha256(resolved)
    except OSError as error:
        return problem(f"image {image!r} cannot be read ({error.strerror or error})")
    return ManifestRow(line=line, image=image, path=resolved, sha256=digest, size_bytes=size, values=values)


def _is_inside(path: Path, folder: Path) -> bool:
    return folder in path.parents


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
