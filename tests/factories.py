"""factory_boy factories for the tests: users with roles, studies, cases imported from small generated PNGs, reader
sessions and readings, and the chest-phantom studies and generation batches of the cleanup tests.

Each factory builds through the services the site uses (``study_create``, ``cases_import``, ``reader_assign``,
``reading_submit``), so what it makes is what a coordinator or a reader would have made. Tests import these instead
of importing each other.
"""

from __future__ import annotations

import uuid

import factory
import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from readerstudy.imports import IncomingFile, cases_import
from readerstudy.models import Case, ReaderSession, Reading, Study
from readerstudy.readings import Answer, reading_submit
from readerstudy.roles import ADMIN, COORDINATOR, READER, ensure_role_groups
from readerstudy.selectors import session_current_item
from readerstudy.services import reader_assign, study_create
from tests.conftest import open_for_reading, png_bytes


class UserFactory(factory.django.DjangoModelFactory):
    """``UserFactory(role="reader" | "coordinator" | "admin")``: a user in that role's group (admins are staff)."""

    class Meta:
        model = settings.AUTH_USER_MODEL
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user-{n}")
    password = factory.LazyAttribute(lambda user: f"pw-{user.username}")

    @classmethod
    def _create(cls, model_class, *args, password: str, **kwargs):
        manager = cls._get_manager(model_class)
        user, _ = manager.get_or_create(username=kwargs.pop("username"), defaults=kwargs)
        user.set_password(password)
        user.save()
        return user

    @factory.post_generation
    def role(user, create, extracted, **kwargs):
        if not extracted:
            return
        user.groups.add(ensure_role_groups()[extracted])
        if extracted == ADMIN:
            user.is_staff = True
            user.save(update_fields=["is_staff"])


class StudyFactory(factory.django.DjangoModelFactory):
    """An open study with ``real`` + ``synthetic`` cases (and ``practice`` ones), made by a coordinator.

    Case images are random-texture PNGs seeded from ``seed_base``, so two studies' cases differ unless asked to
    share seeds. Any other keyword is a study setting (``StudyFactory(allow_revisit=False)``).
    """

    class Meta:
        model = Study

    created_by = factory.SubFactory(UserFactory, role=COORDINATOR)
    name = factory.Sequence(lambda n: f"Study {n}")
    status = Study.Status.OPEN
    display_size = 512  # the smallest serving size keeps imports fast
    real = 4
    synthetic = 4
    practice = 0
    seed_base = factory.Sequence(lambda n: 100_000 * (n + 1))

    @classmethod
    def _create(cls, model_class, *, real: int, synthetic: int, practice: int, seed_base: int, **settings_values):
        status = settings_values.pop("status")
        study = study_create(**settings_values)  # a draft: studies open through the blinding gate, below
        for index in range(practice):
            CaseFactory(study=study, truth=Case.Truth.REAL, is_practice=True, seed=seed_base + 5000 + index)
        for index in range(real):
            CaseFactory(study=study, truth=Case.Truth.REAL, seed=seed_base + index)
        for index in range(synthetic):
            CaseFactory(study=study, truth=Case.Truth.SYNTHETIC, seed=seed_base + 1000 + index)
        if status == Study.Status.OPEN:
            open_for_reading(study, study.created_by)
        return study


class CaseFactory(factory.django.DjangoModelFactory):
    """One case imported from a generated PNG (``seed`` picks the image); synthetic cases come from "gen-a"."""

    class Meta:
        model = Case

    study = factory.SubFactory(StudyFactory, real=0, synthetic=0)
    truth = Case.Truth.REAL
    is_practice = False
    seed = factory.Sequence(lambda n: 900_000 + n)
    generator = factory.LazyAttribute(lambda case: "gen-a" if case.truth == Case.Truth.SYNTHETIC else "")
    label = factory.LazyAttribute(lambda case: f"{'p' if case.is_practice else case.truth}-{case.seed}.png")

    @classmethod
    def _create(cls, model_class, *, study, truth, is_practice, seed, generator, label):
        report = cases_import(
            study=study,
            files=[IncomingFile(label, png_bytes(seed))],
            truth=truth,
            generator=generator,
            is_practice=is_practice,
        )
        (row,) = report.rows
        assert row.status == "imported", report.to_dict()
        return Case.objects.get(pk=row.case_id)


class ReaderSessionFactory(factory.django.DjangoModelFactory):
    """A reader assigned to a study, with their stored reading order."""

    class Meta:
        model = ReaderSession

    study = factory.SubFactory(StudyFactory)
    reader = factory.SubFactory(UserFactory, role=READER)

    @classmethod
    def _create(cls, model_class, *, study, reader):
        return reader_assign(study=study, reader=reader)


def varied_answer(session: ReaderSession, item, *, reader_index: int) -> Answer:
    """A varied but reproducible answer to ``item``: correct two times in three, shifted per reader, so readers
    differ and both kinds of error occur; quality scores where the study asks for them."""
    case = item.case
    correct = (case.pk + reader_index) % 3 != 0
    call = case.truth if correct else ("real" if case.truth == "synthetic" else "synthetic")
    values = {
        "call": call,
        "confidence": 1 + (case.pk * (reader_index + 2)) % session.study.confidence_levels,
        "submission_id": uuid.uuid4(),
        "active_ms": 1500 + 137 * case.pk + 50 * reader_index,
    }
    if session.study.asks_quality_for(case):
        shift = 1 if case.truth == "real" else 0
        values.update(
            anatomy=1 + (case.pk + reader_index + shift) % 5,
            style=min(5, 2 + (case.pk + shift) % 4),
            artifacts=1 + (2 * case.pk + reader_index) % 5,
        )
    return Answer(**values)


class ReadingFactory(factory.django.DjangoModelFactory):
    """The session's next item answered through the reading service with :func:`varied_answer`."""

    class Meta:
        model = Reading

    session = factory.SubFactory(ReaderSessionFactory)
    reader_index = 0

    @classmethod
    def _create(cls, model_class, *, session, reader_index):
        item = session_current_item(session=session)
        if item is None:
            raise ValueError(f"{session.reader} has answered every item of {session.study}")
        answer = varied_answer(session, item, reader_index=reader_index)
        return reading_submit(session=session, item_token=item.token, answer=answer).reading


def read_study(study: Study, readers, *, limit: int | None = None) -> list[ReaderSession]:
    """Assign ``readers`` and let each answer up to ``limit`` items (all by default), practice first."""
    sessions = [ReaderSessionFactory(study=study, reader=reader) for reader in readers]
    for index, session in enumerate(sessions):
        answered = 0
        while (limit is None or answered < limit) and session_current_item(session=session) is not None:
            ReadingFactory(session=session, reader_index=index)
            answered += 1
    return sessions


# -- Chest phantoms with burned-in text (the cleanup tests) ----------------------------------------------------


def phantom_pixels(seed: int, *, size: int = 256, text: str | None = None) -> np.ndarray:
    """A chest phantom, with ``text`` burned in as a bright 16 px label near the bottom-left corner when given
    (where a technologist's label sits, and where the default detector reads it reliably on these phantoms)."""
    from cleanup.rendered_text import render_text
    from imaging.phantom import chest_phantom

    pixels = chest_phantom(seed, size=size)
    if text:
        pixels, _ = render_text(pixels, text, x=size // 8, y=size - 30, height=16)
    return pixels


def phantom_png(seed: int, *, size: int = 256, text: str | None = None) -> bytes:
    from imaging.png import encode_png_gray8, to_uint8

    return encode_png_gray8(to_uint8(phantom_pixels(seed, size=size, text=text)))


class PhantomStudyFactory(factory.django.DjangoModelFactory):
    """A draft study with one phantom case per (truth, text) pair of ``cases``, in that order (text None: a clean
    image); ``size`` is the phantoms' size in pixels. Any other keyword is a study setting."""

    class Meta:
        model = Study

    created_by = factory.SubFactory(UserFactory, role=COORDINATOR)
    name = "Phantoms"
    display_size = 512
    cases = ()
    size = 256

    @classmethod
    def _create(cls, model_class, *, cases, size, **settings_values):
        status = settings_values.pop("status", Study.Status.DRAFT)
        study = study_create(**settings_values)
        for seed, (truth, text) in enumerate(cases):
            report = cases_import(
                study=study,
                files=[IncomingFile(f"{truth}-{seed}.png", phantom_png(seed, size=size, text=text))],
                truth=truth,
            )
            assert not report.errors, report.to_dict()
        if status == Study.Status.OPEN:
            open_for_reading(study, study.created_by)
        return study


class PhantomBatchFactory(factory.django.DjangoModelFactory):
    """A generation batch whose image i is a phantom labelled ``texts[i]`` (None: clean), plus ``pending`` images
    not made yet."""

    class Meta:
        model = "generation.GenerationBatch"

    created_by = factory.SubFactory(UserFactory, role=COORDINATOR)
    name = "Phantom batch"
    base_model_dir = "/models/sd"
    generator_label = "sd-phantom"
    steps = 2
    guidance_scale = 4.0
    width = 256
    height = 256
    status = "done"
    texts = ()
    pending = 0

    @classmethod
    def _create(cls, model_class, *, texts, pending, **fields):
        from generation.models import BatchImage, image_file_name
        from imaging.read import sha256_hex

        batch = model_class.objects.create(total=len(texts) + pending, **fields)
        for index, text in enumerate(texts):
            png = phantom_png(index, text=text)  # seeds whose labels the detector reads exactly
            name = default_storage.save(image_file_name(batch.pk, index, "png"), ContentFile(png))
            BatchImage.objects.create(
                batch=batch,
                index=index,
                prompt="view_position = PA. No findings.",
                seed=index,
                status="done",
                png=name,
                png_sha256=sha256_hex(png),
                provenance={"seed": index, "model": "sd-phantom"},
            )
        for index in range(len(texts), len(texts) + pending):
            BatchImage.objects.create(batch=batch, index=index, prompt="p", seed=index)
        return batch
