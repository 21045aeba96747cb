"""Case import: image files become cases of one class, each all-or-nothing with a line in the import report; and
folder imports as background jobs (`jobs.runner`) that resume after a killed worker without importing a file twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from imaging.errors import ImageImportError
from imaging.read import read_image, sha256_hex
from jobs import runner
from readerstudy.models import (
    Case,
    ImportJob,
    Study,
)
from readerstudy.served_images import case_features, render_served, render_unharmonised
from readerstudy.services import sessions_extend

logger = logging.getLogger(__name__)
User = get_user_model()


# --- Case import -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncomingFile:
    """A file offered for import: its name is kept for the coordinator only, never shown to readers."""

    name: str
    data: bytes


@dataclass(frozen=True)
class ImportRow:
    name: str
    status: str  # "imported" | "duplicate" | "error"
    message: str = ""
    case_id: int | None = None
    notes: tuple[str, ...] = ()
    flagged: bool = False


@dataclass
class ImportReport:
    rows: list[ImportRow] = field(default_factory=list)

    @property
    def imported(self) -> list[ImportRow]:
        return [row for row in self.rows if row.status == "imported"]

    @property
    def errors(self) -> list[ImportRow]:
        return [row for row in self.rows if row.status == "error"]

    @property
    def duplicates(self) -> list[ImportRow]:
        return [row for row in self.rows if row.status == "duplicate"]

    @property
    def flagged(self) -> list[ImportRow]:
        return [row for row in self.rows if row.flagged]

    def summary(self) -> str:
        parts = [f"{len(self.imported)} imported"]
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} duplicate")
        if self.errors:
            parts.append(f"{len(self.errors)} refused")
        if self.flagged:
            parts.append(f"{len(self.flagged)} converted from colour")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {
            "summary": self.summary(),
            "rows": [import_row_dict(row) for row in self.rows],
        }


def cases_import(
    *,
    study: Study,
    files: Iterable[IncomingFile],
    truth: str,
    source: str = Case.Source.UPLOAD,
    is_practice: bool = False,
    generator: str = "",
    provenance: dict | None = None,
    extend_sessions: bool = True,
) -> ImportReport:
    """Import image files as cases of one class. Each file is all-or-nothing; a bad file does not stop the batch.

    Existing readers get the new cases appended to their stored orders (never reordered); a caller importing file
    by file passes `extend_sessions=False` and calls `sessions_extend` once at the end.
    """
    if truth not in Case.Truth.values:
        raise ValidationError(f"Unknown truth {truth!r}: use 'real' or 'synthetic'.")
    report = ImportReport()
    for incoming in files:
        report.rows.append(
            _import_one(
                study=study,
                incoming=incoming,
                truth=truth,
                source=source,
                is_practice=is_practice,
                generator=generator,
                provenance=provenance or {},
            )
        )
    if report.imported and extend_sessions:
        sessions_extend(study=study)
    return report


def import_row_dict(row: ImportRow) -> dict:
    return {
        "name": row.name,
        "status": row.status,
        "message": row.message,
        "case_id": row.case_id,
        "notes": list(row.notes),
        "flagged": row.flagged,
    }


def _import_one(
    *,
    study: Study,
    incoming: IncomingFile,
    truth: str,
    source: str,
    is_practice: bool,
    generator: str,
    provenance: dict,
) -> ImportRow:
    name = incoming.name
    if len(incoming.data) > settings.IMPORT_MAX_FILE_BYTES:
        limit_mb = settings.IMPORT_MAX_FILE_BYTES // (1024 * 1024)
        return ImportRow(name, "error", f"The file is larger than the {limit_mb} MB limit.")
    sha256 = sha256_hex(incoming.data)
    if Case.objects.filter(study=study, original_sha256=sha256).exists():
        return ImportRow(name, "duplicate", "This file is already a case in this study.")
    try:
        decoded = read_image(incoming.data)
        served = render_served(study, decoded.pixels)
    except ImageImportError as exc:
        return ImportRow(name, "error", exc.message)
    except Exception:  # a decoder bug must not abort the batch; the file is refused and logged
        logger.exception("Unexpected failure decoding %s", name)
        return ImportRow(name, "error", "The file could not be decoded as an image.")

    case = Case(
        study=study,
        truth=truth,
        is_practice=is_practice,
        source=source,
        label=name[:255],
        generator=generator[:120],
        provenance=provenance,
        original_sha256=sha256,
        original_format=decoded.source_format,
        image_sha256=sha256_hex(served),
        width=decoded.width,
        height=decoded.height,
        was_colour=decoded.was_colour,
        import_notes=list(decoded.notes),
        served_features=case_features(decoded, served, unharmonised=render_unharmonised(study, decoded.pixels)),
    )
    try:
        with _files_removed_on_failure(case), transaction.atomic():
            case.original.save("original", ContentFile(incoming.data), save=False)
            case.image.save("image.png", ContentFile(served), save=False)
            case.save()
    except IntegrityError:
        return ImportRow(name, "duplicate", "This file is already a case in this study.")
    return ImportRow(name, "imported", case_id=case.pk, notes=tuple(decoded.notes), flagged=decoded.was_colour)


class _files_removed_on_failure:
    """Deletes the files a failed case import wrote, so a failure leaves neither rows nor files behind."""

    def __init__(self, case: Case) -> None:
        self.case = case

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            for stored in (self.case.original, self.case.image):
                if stored and stored.name:
                    stored.storage.delete(stored.name)
        return False


# --- Folder import jobs ------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""}


def folder_image_paths(folder: Path) -> list[Path]:
    """Image-like files under `folder`, recursively, in a stable order."""
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    ]


def folder_files(folder: Path) -> Iterator[IncomingFile]:
    """The folder's image files, read one at a time, named by their path inside the folder."""
    for path in folder_image_paths(folder):
        yield IncomingFile(name=str(path.relative_to(folder)), data=path.read_bytes())


@transaction.atomic
def import_job_start(
    *, study: Study, created_by: User, folder: Path, truth: str, generator: str = "", is_practice: bool = False
) -> ImportJob:
    """Queue a folder import for a worker; it is sent once this transaction commits (and, if the broker is down,
    waits with the reason until a worker starts: `jobs.runner`)."""
    job = ImportJob.objects.create(
        study=study,
        created_by=created_by,
        folder=str(folder),
        truth=truth,
        generator=generator,
        is_practice=is_practice,
        total=len(folder_image_paths(folder)),
    )
    runner.enqueue_on_commit(job)
    return job


def import_job_run(*, job_pk: int, worker: str = "") -> ImportJob:
    """Import a job's folder file by file, recording each result as it goes, with a heartbeat.

    Safe to run again after a crash: files already in the report are skipped, and a file imported just before a
    crash but not yet reported is recognised by its hash and reported as imported. A second delivery while a live
    worker runs the import does nothing; a worker killed mid-import is replaced within JOB_STALE_AFTER_SECONDS.
    """
    job = runner.run_begin(ImportJob, job_pk, worker=worker)
    if job is None:
        return ImportJob.objects.get(pk=job_pk)
    job = ImportJob.objects.select_related("study").get(pk=job_pk)
    folder = Path(job.folder)
    if not folder.is_dir():
        return runner.job_fail(ImportJob, job_pk, f"There is no folder {folder}.")
    paths = folder_image_paths(folder)
    if job.total != len(paths):
        job.total = len(paths)
        job.save(update_fields=["total"])
    done = {row["name"] for row in job.report}
    with runner.Heartbeat(job):
        for path in paths:
            name = str(path.relative_to(folder))
            if name in done:
                continue
            job.report.append(import_row_dict(_import_file(job, path, name)))
            job.save(update_fields=["report"])
        sessions_extend(study=job.study)
    return runner.job_finish(ImportJob, job_pk)


def _import_file(job: ImportJob, path: Path, name: str) -> ImportRow:
    data = path.read_bytes()
    existing = Case.objects.filter(study=job.study, original_sha256=sha256_hex(data)).first()
    if existing is not None and existing.created_at >= job.created_at and existing.label == name[:255]:
        return ImportRow(name, "imported", case_id=existing.pk, notes=tuple(existing.import_notes))
    report = cases_import(
        study=job.study,
        files=[IncomingFile(name, data)],
        truth=job.truth,
        source=Case.Source.FOLDER,
        is_practice=job.is_practice,
        generator=job.generator,
        extend_sessions=False,
    )
    return report.rows[0]


def folder_in_import_roots(folder: str | Path) -> Path:
    """The folder, with ``~`` expanded and symlinks resolved, if it is an existing folder inside one of the
    allowed import roots; ValidationError saying why otherwise (also when no roots are set)."""
    resolved = Path(folder).expanduser().resolve()
    roots = settings.IMPORT_ROOTS
    if not roots:
        raise ValidationError("Importing from server folders is switched off (set IMPORT_ROOTS).")
    if not any(resolved == root or root in resolved.parents for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise ValidationError(f"The folder must be inside an allowed import root: {allowed}.")
    if not resolved.is_dir():
        raise ValidationError(f"There is no folder {resolved}.")
    return resolved
