"""The report as JSON: the study, the version of its readings, the blinding at opening and every statistic."""

from __future__ import annotations

import json

from readerstudy.analysis import MODALITY, StudyAnalysis, study_analysis
from readerstudy.blinding import study_opening_record
from readerstudy.models import Study


def report_payload(study: Study, analysis: StudyAnalysis) -> dict:
    """The study, the version of its readings and the full report dict (None with ``problem`` when none yet)."""
    return {
        "study": {
            "id": study.pk,
            "name": study.name,
            "status": study.status,
            "confidence_levels": study.confidence_levels,
            "modality": MODALITY,
        },
        "readings": analysis.version.count,
        "last_reading_change": analysis.version.last_change.isoformat() if analysis.version.last_change else None,
        "computed_at": analysis.computed_at.isoformat(),
        "problem": analysis.problem or None,
        "blinding_at_opening": study_opening_record(study=study),
        "report": analysis.report.to_dict() if analysis.report is not None else None,
    }


def report_json(study: Study) -> bytes:
    payload = report_payload(study, study_analysis(study=study))
    return json.dumps(payload, indent=2, allow_nan=False).encode()
