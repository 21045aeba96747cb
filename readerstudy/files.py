"""Stored files follow their rows: when a row with file fields is deleted (a case, a generated image, a cleanup
item — directly, through the admin, or by cascade from its study, batch or job), its files are deleted once the
deletion commits. A rolled-back deletion keeps them; a file that cannot be deleted is logged, never an error for
the person who deleted the row.

Workers write their outputs through `store_replacing` (one fixed name per output, so a retry overwrites what a
stopped worker left) and remove what a failed step wrote with `delete_stored`."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import models, transaction
from django.db.models.signals import post_delete

logger = logging.getLogger(__name__)


def delete_files_after_commit(sender: type[models.Model], instance: models.Model, using: str, **kwargs) -> None:
    """post_delete receiver: schedule the deletion of every file the deleted row refers to."""
    for field in sender._meta.concrete_fields:
        if not isinstance(field, models.FileField):
            continue
        name = getattr(instance, field.attname)
        name = getattr(name, "name", name)
        if name:
            transaction.on_commit(_deleter(field.storage, name), using=using, robust=True)


def _deleter(storage, name: str):
    def delete() -> None:
        try:
            storage.delete(name)
        except OSError:
            logger.warning("Could not delete the stored file %s of a deleted row.", name, exc_info=True)

    return delete


def delete_files_with_rows(*model_classes: type[models.Model]) -> None:
    """Connect the receiver for these models (called from each app's `ready`)."""
    for model in model_classes:
        post_delete.connect(
            delete_files_after_commit, sender=model, dispatch_uid=f"delete-files-{model._meta.label_lower}"
        )


def store_replacing(name: str, data: bytes) -> str:
    """Store `data` under exactly `name` in the default storage, replacing a file a stopped worker may have left
    there rather than storing a second copy. If the storage picks another name (another process is writing the
    same outputs), the copy it made is removed and RuntimeError says so."""
    if default_storage.exists(name):
        default_storage.delete(name)
    saved = default_storage.save(name, ContentFile(data))
    if saved != name:
        delete_stored([saved])
        raise RuntimeError(f"Storage saved {name} as {saved}: another process is writing these files.")
    return saved


def delete_stored(names: Iterable[str]) -> None:
    """Delete the named files of the default storage (empty names skipped), after a failed step: a file that
    cannot be deleted is logged, so the failure being cleaned up is the one reported."""
    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("Could not delete the stored file %s after a failed step.", name, exc_info=True)
