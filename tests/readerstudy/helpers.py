"""Helpers for answering cases in tests."""

from __future__ import annotations

import uuid

from readerstudy.models import ReaderSession
from readerstudy.readings import Answer, reading_submit
from readerstudy.selectors import session_current_item


def answer_for(session: ReaderSession, item, **overrides) -> Answer:
    values = {"call": "real", "confidence": 3, "submission_id": uuid.uuid4()}
    if session.study.asks_quality_for(item.case):
        values.update(anatomy=4, style=4, artifacts=5)
    values.update(overrides)
    return Answer(**values)


def answer_next(session: ReaderSession, **overrides):
    item = session_current_item(session=session)
    return reading_submit(session=session, item_token=item.token, answer=answer_for(session, item, **overrides))
