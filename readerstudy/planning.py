"""Planning a study: a pilot study's Obuchowski-Rockette variance components, from its cached report, and the
readers x cases table of :func:`readerstudy.stats.power.or_study_plan` as rows for the "Plan a study" page."""

from __future__ import annotations

import math
from dataclasses import dataclass

from readerstudy.analysis import study_analysis
from readerstudy.models import Study
from readerstudy.stats.mrmc import MRMCResult
from readerstudy.stats.power import ORComponents, PlannedDesign, StudyPlan, or_components

FIGURE_LABELS = {"auc": "AUC", "accuracy": "accuracy", "sensitivity": "sensitivity", "specificity": "specificity"}
# Below these, the components are estimated so roughly that the table is a sketch (and the page says so).
FEW_PILOT_READERS = 3
FEW_PILOT_CASES = 30


@dataclass(frozen=True)
class Pilot:
    """A study as the pilot of a planned one: its components for one figure of merit, or why there are none
    (``problem``); ``cautions`` are said beside usable but rough components."""

    figure: str
    components: ORComponents | None
    readers: int
    cases: int
    estimate: float | None
    problem: str
    cautions: tuple[str, ...]


def study_pilot(*, study: Study, figure: str = "auc") -> Pilot:
    """The study's OR components for ``figure`` from its report (computed once per version of its readings)."""
    label = FIGURE_LABELS[figure]
    analysis = study_analysis(study=study)
    if analysis.report is None:
        return Pilot(figure, None, 0, 0, None, analysis.problem, ())
    results: tuple[MRMCResult, ...] = getattr(analysis.report.mrmc, figure)
    if len(results) != 1:
        reasons = [note for note in analysis.report.notes if note.startswith(f"MRMC {figure}")]
        problem = (
            f"The readings give no MRMC analysis of the {label} yet"
            + (f" ({'; '.join(reasons)})" if reasons else "")
            + ": it needs every reader to have read at least two real and two synthetic cases."
        )
        return Pilot(figure, None, 0, 0, None, problem, ())
    result = results[0]
    readers, cases = len(result.readers), result.n_cases
    estimate = result.modality_means[0]
    if readers < 2:
        problem = (
            f"This pilot has {readers} reader: the reader variance, which decides how many readers a study "
            "needs, takes at least two readers to estimate. Assign another reader, or type in components."
        )
        return Pilot(figure, None, readers, cases, estimate, problem, ())
    components = or_components(result)
    missing = components.missing("chance")
    if missing:
        problem = (
            f"The pilot's readings give no estimate of {', '.join(missing)} for the {label} (with {readers} "
            f"readers and {cases} cases read by all of them): the cases do not vary enough between readers."
        )
        return Pilot(figure, None, readers, cases, estimate, problem, ())
    if components.var_error <= 0:
        problem = (
            f"Every reader's {label} is the same on every subset of the pilot's cases (error variance 0): the "
            "pilot says nothing about how the estimate varies with cases."
        )
        return Pilot(figure, None, readers, cases, estimate, problem, ())
    cautions = []
    if readers < FEW_PILOT_READERS or cases < FEW_PILOT_CASES:
        cautions.append(
            f"Components from {readers} readers and {cases} cases are rough estimates: read the table as a "
            "sketch, and plan again when the pilot is larger."
        )
    if components.var_reader < 0:
        cautions.append(
            f"The pilot's reader variance estimate is negative ({components.var_reader:.2e}): readers differ "
            "less than the case variance alone predicts, and it counts as zero, as in Hillis et al. (2011)."
        )
    return Pilot(figure, components, readers, cases, estimate, "", tuple(cautions))


@dataclass(frozen=True)
class PlanCell:
    design: PlannedDesign
    text: str
    meets: bool
    smallest: bool


@dataclass(frozen=True)
class PlanRow:
    readers: int
    cells: tuple[PlanCell, ...]
    cases_needed: int | None


def plan_rows(plan: StudyPlan) -> tuple[PlanRow, ...]:
    """The plan as table rows: one per number of readers, one cell per number of cases."""
    rows = []
    for readers, designs, needed in zip(plan.readers, plan.designs, plan.cases_needed, strict=True):
        cells = tuple(
            PlanCell(design, cell_text(plan, design), plan.meets(design), design == plan.smallest) for design in designs
        )
        rows.append(PlanRow(readers, cells, needed))
    return tuple(rows)


def cell_text(plan: StudyPlan, design: PlannedDesign) -> str:
    # Rounded against the target (power down, half-width up): a cell that misses the target never reads as if it
    # met it (a power of 0.7996 is 79.9%, not 80.0%).
    if plan.target == "power":
        percent = math.floor(design.power * 1000) / 10
        return f"{percent:.1f}%" if percent < 99.9 else ">99.9%"
    return f"±{math.ceil(design.half_width * 1000) / 1000:.3f}"
