"""Submitting readings: exactly once, in order, atomically, locked unless the study allows changes, with history."""

import threading
import uuid

import pytest
from django.db import connection

from readerstudy.models import AppendOnlyError, Reading, ReadingEvent
from readerstudy.readings import ReadingRejected, reading_submit
from readerstudy.selectors import session_current_item, session_progress
from tests.readerstudy.helpers import answer_for, answer_next

pytestmark = pytest.mark.django_db


def test_a_submission_is_recorded_with_one_history_event(session):
    result = answer_next(session, call="synthetic", confidence=5)
    assert result.outcome == "created"
    reading = Reading.objects.get()
    assert (reading.call, reading.confidence, reading.revision) == ("synthetic", 5, 1)
    event = reading.events.get()
    assert event.values == reading.values()
    assert session_progress(session=session).answered == 1


def test_resubmitting_the_same_answer_records_it_once(session):
    item = session_current_item(session=session)
    answer = answer_for(session, item)
    first = reading_submit(session=session, item_token=item.token, answer=answer)
    second = reading_submit(session=session, item_token=item.token, answer=answer)
    assert (first.outcome, second.outcome) == ("created", "duplicate")
    assert Reading.objects.count() == 1 and ReadingEvent.objects.count() == 1
    assert second.reading.pk == first.reading.pk


def test_answers_cannot_change_unless_the_study_allows_it(session):
    item = session_current_item(session=session)
    reading_submit(session=session, item_token=item.token, answer=answer_for(session, item, call="real"))
    retry = reading_submit(session=session, item_token=item.token, answer=answer_for(session, item, call="synthetic"))
    assert retry.outcome == "locked"
    assert Reading.objects.get().call == "real"
    assert ReadingEvent.objects.count() == 1


def test_changes_keep_the_earlier_values_in_an_append_only_chained_history(make_study, reader):
    from readerstudy.readings import history_verify
    from readerstudy.services import reader_assign

    study = make_study(allow_revisit=True)
    session = reader_assign(study=study, reader=reader)
    item = session_current_item(session=session)
    reading_submit(session=session, item_token=item.token, answer=answer_for(session, item, call="real"))
    changed = reading_submit(
        session=session, item_token=item.token, answer=answer_for(session, item, call="synthetic", confidence=5)
    )
    assert changed.outcome == "changed"
    reading = Reading.objects.get()
    assert (reading.call, reading.revision) == ("synthetic", 2)
    events = list(reading.events.order_by("revision"))
    assert [e.values["call"] for e in events] == ["real", "synthetic"]
    assert events[1].previous_hash == events[0].hash
    assert history_verify(reading=reading)

    # The same values again add nothing to the history.
    same = reading_submit(
        session=session, item_token=item.token, answer=answer_for(session, item, call="synthetic", confidence=5)
    )
    assert same.outcome == "unchanged" and reading.events.count() == 2

    # History rows refuse updates and deletes through the ORM; a change made behind its back breaks the chain.
    with pytest.raises(AppendOnlyError):
        events[0].save()
    with pytest.raises(AppendOnlyError):
        events[0].delete()
    ReadingEvent.objects.filter(pk=events[0].pk).update(values={**events[0].values, "call": "synthetic"})
    assert not history_verify(reading=reading)


def test_cases_are_answered_in_order(session):
    later = session.items.order_by("position")[2]
    with pytest.raises(ReadingRejected, match="in order"):
        reading_submit(session=session, item_token=later.token, answer=answer_for(session, later))
    assert Reading.objects.count() == 0


def test_another_readers_item_is_refused(study, session, other_reader):
    from readerstudy.services import reader_assign

    other = reader_assign(study=study, reader=other_reader)
    their_item = session_current_item(session=other)
    with pytest.raises(ReadingRejected):
        reading_submit(session=session, item_token=their_item.token, answer=answer_for(other, their_item))
    assert Reading.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"call": "maybe"}, "call"),
        ({"confidence": 6}, "confidence"),
        ({"anatomy": None}, "anatomy"),
        ({"style": 0}, "style"),
        ({"flags": ("laser_eyes",)}, "flags"),
    ],
)
def test_incomplete_or_invalid_answers_are_refused_and_nothing_is_written(session, overrides, field):
    item = session_current_item(session=session)
    with pytest.raises(ReadingRejected) as caught:
        reading_submit(session=session, item_token=item.token, answer=answer_for(session, item, **overrides))
    assert field in caught.value.field_errors
    assert Reading.objects.count() == 0 and ReadingEvent.objects.count() == 0


def test_closed_study_takes_no_readings(session):
    session.study.status = "closed"
    session.study.save()
    with pytest.raises(ReadingRejected, match="not open"):
        answer_next(session)


def test_a_failure_after_the_reading_row_rolls_the_whole_submission_back(session, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(ReadingEvent, "save", broken)
    with pytest.raises(RuntimeError):
        answer_next(session)
    assert Reading.objects.count() == 0
    assert session_current_item(session=session).position == 0


def test_session_completes_when_the_last_case_is_answered(session):
    total = session.items.count()
    for _ in range(total):
        answer_next(session)
    session.refresh_from_db()
    assert session.completed_at is not None
    assert session_current_item(session=session) is None


def test_quality_is_not_asked_when_switched_off(make_study, reader):
    from readerstudy.services import reader_assign

    study = make_study(quality_scoring="off")
    session = reader_assign(study=study, reader=reader)
    item = session_current_item(session=session)
    result = reading_submit(session=session, item_token=item.token, answer=answer_for(session, item))
    assert result.reading.anatomy is None
    with pytest.raises(ReadingRejected):
        next_item = session_current_item(session=session)
        reading_submit(session=session, item_token=next_item.token, answer=answer_for(session, next_item, anatomy=3))


def test_quality_sample_is_class_blind_and_stable(make_study):
    study = make_study(real=40, synthetic=40, quality_scoring="sample", quality_sample_fraction=0.5)
    scored = {truth: 0 for truth in ("real", "synthetic")}
    for case in study.cases.all():
        assert study.asks_quality_for(case) == study.asks_quality_for(case)
        scored[case.truth] += study.asks_quality_for(case)
    # A hash-based draw: roughly half of each class, and never all or nothing.
    assert 8 <= scored["real"] <= 32 and 8 <= scored["synthetic"] <= 32


@pytest.mark.django_db(transaction=True)
def test_concurrent_double_submission_records_one_reading(make_study, reader):
    """Two requests with the same answer racing each other (a double click) give one reading, one event."""
    from readerstudy.services import reader_assign

    study = make_study()
    session = reader_assign(study=study, reader=reader)
    item = session_current_item(session=session)
    answer = answer_for(session, item)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def submit():
        barrier.wait()
        try:
            outcomes.append(reading_submit(session=session, item_token=item.token, answer=answer).outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created", "duplicate"]
    assert Reading.objects.count() == 1 and ReadingEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_different_answers_for_one_case_record_the_first_only(make_study, reader):
    from readerstudy.services import reader_assign

    study = make_study()
    session = reader_assign(study=study, reader=reader)
    item = session_current_item(session=session)
    answers = [answer_for(session, item, call="real"), answer_for(session, item, call="synthetic")]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def submit(answer):
        barrier.wait()
        try:
            outcomes.append(reading_submit(session=session, item_token=item.token, answer=answer).outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(a,)) for a in answers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created", "locked"]
    assert Reading.objects.count() == 1 and ReadingEvent.objects.count() == 1


def test_a_reused_submission_id_on_another_case_is_refused(session):
    first = session_current_item(session=session)
    token = uuid.uuid4()
    reading_submit(session=session, item_token=first.token, answer=answer_for(session, first, submission_id=token))
    second = session_current_item(session=session)
    with pytest.raises(ReadingRejected):
        reading_submit(
            session=session, item_token=second.token, answer=answer_for(session, second, submission_id=token)
        )
    assert Reading.objects.count() == 1
