"""Training dataset import: a server folder with a manifest becomes a TrainingDataset of image-prompt examples, each
manifest row imported whole or refused with one line in the import report.

Images go through the same reading and de-identification as study cases (`imaging.read.read_image`: every format to
display pixels, no metadata kept), are padded with black to a centred square (`imaging.normalise.pad_to_square`,
never flipped, so a laterality marker keeps its side) and stored as 16-bit grayscale PNGs. Prompts are built from
the template (`training.prompts`) and fitted into the text encoder's tokens, every cut counted. The split is drawn
over patients (`training.splits`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from imaging.errors import ImageImportError
from imaging.normalise import pad_to_square
from imaging.previews import encode_png_gray16
from imaging.read import read_image, sha256_hex
from readerstudy.files import delete_stored
from readerstudy.imports import folder_in_import_roots
from training.manifest import OPTIONAL_COLUMNS, TEXT_COLUMNS, ManifestError, ManifestRow, read_manifest
from training.models import TrainingDataset, TrainingExample
from training.prompts import (
    CLIP_MAX_TOKENS,
    DEFAULT_TEMPLATE,
    FittedPrompt,
    Impression,
    PromptError,
    Tokenizer,
    build_prompt,
    check_template,
    extract_impression,
    fit_prompt,
    normalise_whitespace,
    template_values,
    tokenizer_description,
)
from training.splits import DEFAULT_SPLIT_FRACTIONS, SPLITS, assign_splits, check_split_fractions

logger = logging.getLogger(__name__)
User = get_user_model()

RowStatus = Literal["imported", "refused"]


@dataclass(frozen=True)
class DatasetImportRow:
    """What became of one manifest row: imported as an example (with its split), or refused with the reason."""

    line: int
    image: str
    status: RowStatus
    message: str = ""
    example_id: int | None = None
    split: str = ""
    truncated: bool = False
    dropped_tokens: int = 0

    def __str__(self) -> str:
        if self.status == "refused":
            return f"line {self.line}: {self.message}"
        cut = f"; prompt truncated, {self.dropped_tokens} tokens dropped" if self.truncated else ""
        return f"line {self.line}: imported {self.image!r} ({self.split}){cut}"

    def to_dict(self) -> dict:
        return {**asdict(self), "text": str(self)}


@dataclass(frozen=True)
class DatasetImport:
    """The outcome of an import: the dataset, or None with the reason it was refused, and one row per manifest
    row that could be read (none when the manifest itself was unusable)."""

    dataset: TrainingDataset | None
    rows: tuple[DatasetImportRow, ...]
    refusal: str = ""

    @property
    def imported(self) -> list[DatasetImportRow]:
        return [row for row in self.rows if row.status == "imported"]

    @property
    def refused(self) -> list[DatasetImportRow]:
        return [row for row in self.rows if row.status == "refused"]

    @property
    def truncated(self) -> list[DatasetImportRow]:
        return [row for row in self.rows if row.truncated]

    def summary(self) -> str:
        if self.dataset is None:
            return self.refusal
        splits = ", ".join(f"{sum(row.split == split for row in self.imported)} {split}" for split in SPLITS)
        parts = [f"{len(self.imported)} imported ({splits})"]
        if self.refused:
            parts.append(f"{len(self.refused)} refused")
        if self.truncated:
            parts.append(f"{len(self.truncated)} prompts truncated to fit the text encoder")
        return ", ".join(parts) + "."

    def lines(self) -> list[str]:
        return [str(row) for row in self.rows]


def dataset_import(
    *,
    created_by: User,
    name: str,
    folder: Path,
    template: str = DEFAULT_TEMPLATE,
    tokenizer: Tokenizer,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    seed: int = 0,
    manifest: Path | str | None = None,
    max_tokens: int = CLIP_MAX_TOKENS,
) -> DatasetImport:
    """Import a folder's manifest (``manifest.csv`` / ``manifest.jsonl``, or ``manifest``) as a new dataset.

    The folder must be inside ``settings.IMPORT_ROOTS`` (the rule of case folder imports). Each row is all or
    nothing: a refused row leaves neither a file nor a database row, and gets one line in the report. The whole
    dataset is refused, with nothing stored, when the folder or manifest is unusable, the template uses a field no
    column gives, or no row imports. When the manifest has a ``prompt`` column its prompts are used as written and
    the template is not applied. The split is by ``patient_id`` when the manifest gives one (an image without one
    is a patient of its own), else by image: seeded with ``seed``, sizes as close to ``split_fractions``
    (train, validation, test) as the patients allow. ``tokenizer`` is the text encoder's tokenizer (see
    `training.prompts.fit_prompt`).
    """
    try:
        fractions = check_split_fractions(split_fractions)
    except ValueError as error:
        raise ValidationError(str(error)) from error
    if not name.strip():
        raise ValidationError("Give the dataset a name.")
    try:
        folder = folder_in_import_roots(folder)
        read = read_manifest(folder, manifest, max_file_bytes=settings.IMPORT_MAX_FILE_BYTES)
    except ValidationError as error:
        return _refused(" ".join(error.messages))
    except ManifestError as error:
        return _refused(str(error))

    from_prompt_column = read.text_column == "prompt"
    if not from_prompt_column:
        try:
            check_template(template, read.columns)
        except PromptError as error:
            return _refused(str(error))

    rows = [DatasetImportRow(problem.line, problem.image, "refused", problem.message) for problem in read.problems]
    prepared: list[_PreparedRow] = []
    for row in read.rows:
        try:
            prepared.append(_prepare(row, template, from_prompt_column, tokenizer, max_tokens))
        except PromptError as error:
            rows.append(DatasetImportRow(row.line, row.image, "refused", str(error)))
    if not prepared:
        return _refused(_nothing_imported(read.name, rows), rows)

    settings_used = {
        "split_fractions": list(fractions),
        "seed": seed,
        "split_by": "patient" if any(item.row.patient_id for item in prepared) else "image",
        "prompt_source": "prompt column" if from_prompt_column else "template",
        "tokenizer": tokenizer_description(tokenizer),
        "max_tokens": max_tokens,
        "image_storage": "16-bit grayscale PNG, padded with black to a centred square",
    }
    written: list[str] = []
    try:
        with transaction.atomic():
            dataset = TrainingDataset.objects.create(
                name=name.strip()[:200],
                folder=str(folder),
                manifest=read.name,
                template="" if from_prompt_column else template,
                created_by=created_by,
                settings=settings_used,
            )
            examples: list[TrainingExample] = []
            for item in prepared:
                outcome = _import_row(dataset, item)
                if isinstance(outcome, TrainingExample):
                    written.append(outcome.image.name)
                    examples.append(outcome)
                else:
                    rows.append(outcome)
            if not examples:
                raise _NothingImported
            rows += _split_and_count(dataset, examples, rows, fractions, seed)
    except BaseException as error:
        # The transaction rolled back every row: the files go too, so that nothing of the dataset is left.
        delete_stored(written)
        if isinstance(error, _NothingImported):
            return _refused(_nothing_imported(read.name, rows), rows)
        raise
    return DatasetImport(dataset=dataset, rows=tuple(sorted(rows, key=lambda row: row.line)))


def dataset_digest(examples: Iterable[TrainingExample]) -> str:
    """SHA-256 over each example's original image digest, stored image digest, prompt and split, in a canonical
    order (sorted by original digest, as canonical JSON): what a training run reads, independent of the import's
    order, ids and file names. Weights are not included: they change after import."""
    records = sorted([e.image_sha256, e.stored_sha256, e.prompt, e.split] for e in examples)
    payload = json.dumps(records, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# --- Rows -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PreparedRow:
    row: ManifestRow
    impression: Impression
    fitted: FittedPrompt


class _NothingImported(Exception):
    """Rolls the dataset back when no row imported."""


def _refused(reason: str, rows: Iterable[DatasetImportRow] = ()) -> DatasetImport:
    return DatasetImport(dataset=None, rows=tuple(sorted(rows, key=lambda row: row.line)), refusal=reason)


def _nothing_imported(manifest_name: str, rows: Sequence[DatasetImportRow]) -> str:
    refused = "its one row was refused" if len(rows) == 1 else f"all {len(rows)} rows were refused"
    return f"Nothing in {manifest_name} could be imported: {refused} (see each line)."


def _prepare(
    row: ManifestRow, template: str, from_prompt_column: bool, tokenizer: Tokenizer, max_tokens: int
) -> _PreparedRow:
    impression = extract_impression(row.report)
    prompt = (
        normalise_whitespace(row.prompt) if from_prompt_column else build_prompt(template, template_values(row.values))
    )
    return _PreparedRow(row=row, impression=impression, fitted=fit_prompt(prompt, tokenizer, max_tokens))


def _import_row(dataset: TrainingDataset, item: _PreparedRow) -> TrainingExample | DatasetImportRow:
    row = item.row

    def refused(message: str) -> DatasetImportRow:
        return DatasetImportRow(row.line, row.image, "refused", message)

    try:
        data = row.path.read_bytes()
    except OSError as error:
        return refused(f"image {row.image!r} cannot be read ({error.strerror or error})")
    if sha256_hex(data) != row.sha256:
        return refused(f"image {row.image!r} changed while the dataset was being imported")
    try:
        decoded = read_image(data, max_bytes=settings.IMPORT_MAX_FILE_BYTES)
        png = encode_png_gray16(pad_to_square(decoded.pixels))
    except ImageImportError as error:
        return refused(f"image {row.image!r} cannot be read: {error.message}")
    except Exception:  # a decoder bug must not abort the dataset; the row is refused and logged
        logger.exception("Unexpected failure decoding %s", row.path)
        return refused(f"image {row.image!r} could not be decoded as an image")

    fitted = item.fitted
    example = TrainingExample(
        dataset=dataset,
        image_sha256=row.sha256,
        stored_sha256=sha256_hex(png),
        source_path=row.image[:1000],
        source_format=decoded.source_format,
        manifest_line=row.line,
        width=decoded.width,
        height=decoded.height,
        import_notes=list(decoded.notes),
        patient_id=row.patient_id[:200],
        view=row.value("view")[:50],
        sex=row.value("sex")[:50],
        age=row.value("age")[:50],
        extra={column: value for column, value in row.values.items() if column not in _STORED_COLUMNS},
        report=row.report,
        impression=item.impression.text,
        prompt=fitted.text,
        prompt_tokens=fitted.tokens,
        truncated=fitted.truncated,
        dropped_tokens=fitted.dropped_tokens,
        # Every example gets its real split once all rows are in (_split_and_count), in this transaction.
        split=TrainingExample.Split.TRAIN,
    )
    try:
        with transaction.atomic():
            example.image.save("image.png", ContentFile(png), save=False)
            example.save()
    except BaseException as error:
        # All or nothing: a row whose database write fails leaves no file behind.
        if example.image.name:
            delete_stored([example.image.name])
        if isinstance(error, IntegrityError):
            return refused(f"image {row.image!r} is already in the dataset")
        raise
    return example


_STORED_COLUMNS = frozenset({"image", *TEXT_COLUMNS, *OPTIONAL_COLUMNS})


def _split_and_count(
    dataset: TrainingDataset,
    examples: list[TrainingExample],
    refused_rows: list[DatasetImportRow],
    fractions: Sequence[float],
    seed: int,
) -> list[DatasetImportRow]:
    """Assign the splits, fill in the dataset's counts and hash, and give the imported rows' report lines."""
    by_patient = dataset.settings["split_by"] == "patient"
    groups = [
        f"patient:{example.patient_id}" if by_patient and example.patient_id else f"image:{example.image_sha256}"
        for example in examples
    ]
    for example, split in zip(examples, assign_splits(groups, fractions, seed=seed), strict=True):
        example.split = split
    TrainingExample.objects.bulk_update(examples, ["split"])

    imported = [
        DatasetImportRow(
            line=example.manifest_line,
            image=example.source_path,
            status="imported",
            example_id=example.pk,
            split=example.split,
            truncated=example.truncated,
            dropped_tokens=example.dropped_tokens,
        )
        for example in examples
    ]
    report = sorted([*refused_rows, *imported], key=lambda row: row.line)
    dataset.example_count = len(examples)
    dataset.truncated_prompt_count = sum(example.truncated for example in examples)
    dataset.refused_row_count = len(refused_rows)
    dataset.train_count = sum(example.split == "train" for example in examples)
    dataset.validation_count = sum(example.split == "validation" for example in examples)
    dataset.test_count = sum(example.split == "test" for example in examples)
    dataset.dataset_hash = dataset_digest(examples)
    dataset.import_report = [row.to_dict() for row in report]
    dataset.save()
    return imported
