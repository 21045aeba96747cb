"""The test factories make what they say: role users, studies with their cases, sessions and readings."""

import pytest

from readerstudy.roles import is_admin, is_coordinator, is_reader
from tests.factories import ReaderSessionFactory, ReadingFactory, StudyFactory, UserFactory, read_study

pytestmark = pytest.mark.django_db


def test_users_get_their_role():
    reader, coordinator, admin = (UserFactory(role=role) for role in ("reader", "coordinator", "admin"))
    assert is_reader(reader) and not is_coordinator(reader)
    assert is_coordinator(coordinator) and not is_admin(coordinator) and not coordinator.is_staff
    assert is_admin(admin) and admin.is_staff and not admin.is_superuser
    assert admin.check_password(f"pw-{admin.username}")


def test_a_study_has_its_cases_and_two_studies_do_not_share_images():
    study = StudyFactory(real=2, synthetic=3, practice=1)
    cases = study.cases.all()
    assert study.status == "open" and is_coordinator(study.created_by)
    assert sorted(cases.filter(is_practice=False).values_list("truth", flat=True)) == ["real"] * 2 + ["synthetic"] * 3
    assert cases.filter(is_practice=True).count() == 1
    assert set(cases.filter(truth="synthetic").values_list("generator", flat=True)) == {"gen-a"}
    images = set(cases.values_list("image_sha256", flat=True))
    assert not set(StudyFactory(real=2, synthetic=0).cases.values_list("image_sha256", flat=True)) & images


def test_readings_answer_the_next_item_until_none_is_left():
    session = ReaderSessionFactory(study=StudyFactory(real=1, synthetic=1))
    first = ReadingFactory(session=session)
    assert first.item.session == session and first.item.position == 0
    ReadingFactory(session=session)
    with pytest.raises(ValueError, match="has answered every item"):
        ReadingFactory(session=session)


def test_read_study_lets_each_reader_answer_up_to_the_limit():
    study = StudyFactory(real=2, synthetic=2)
    sessions = read_study(study, [UserFactory(role="reader") for _ in range(2)], limit=3)
    assert [session.items.filter(reading__isnull=False).count() for session in sessions] == [3, 3]
