"""Plan a study: readers x cases for a target power or confidence-interval width, from a study read as a pilot or
from typed-in Obuchowski-Rockette components. Coordinators only; nothing is stored."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from readerstudy.forms import PilotComponentsForm, StudyPlanForm
from readerstudy.models import Study
from readerstudy.planning import FIGURE_LABELS, Pilot, cell_text, plan_rows, study_pilot
from readerstudy.roles import coordinator_required
from readerstudy.stats.mrmc import CHANCE_LEVEL
from readerstudy.stats.power import ORComponents, StudyPlan, or_study_plan


@coordinator_required
@require_GET
def study_plan(request: HttpRequest, study_pk: int) -> HttpResponse:
    """The study as the pilot: its components for the chosen figure of merit, and the table."""
    study = get_object_or_404(Study, pk=study_pk)
    form = _plan_form(request)
    valid = form.is_valid()
    pilot = study_pilot(study=study, figure=form.cleaned_data.get("figure", "auc"))
    plan = _plan(form, pilot.components) if valid and pilot.components is not None else None
    context = {"study": study, "form": form, "pilot": pilot, "typed_in_url": _typed_in_url(pilot)}
    return render(request, "readerstudy/study_plan.html", {**context, **_plan_context(form, plan)})


@coordinator_required
@require_GET
def plan_from_components(request: HttpRequest) -> HttpResponse:
    """The same table from typed-in components (a published pilot, another site's study)."""
    form = _plan_form(request)
    typed_in = any(name in request.GET for name in PilotComponentsForm.base_fields)
    components_form = PilotComponentsForm(request.GET if typed_in else None)
    plan = None
    if form.is_valid() and components_form.is_valid():
        plan = _plan(form, components_form.components())
    context = {"study": None, "form": form, "components_form": components_form}
    return render(request, "readerstudy/study_plan.html", {**context, **_plan_context(form, plan)})


def _plan_form(request: HttpRequest) -> StudyPlanForm:
    # Always bound, the defaults filling in what the query leaves out: the page opens with a table.
    return StudyPlanForm({**StudyPlanForm.DEFAULTS, **request.GET.dict()})


def _plan(form: StudyPlanForm, components: ORComponents) -> StudyPlan | None:
    try:
        return or_study_plan(
            components,
            form.readers(),
            form.cases(),
            effect=form.effect(),
            target=form.cleaned_data["target"],
            goal=form.goal(),
            alpha=form.cleaned_data["alpha"],
        )
    except ValueError as error:
        form.add_error(None, f"These components give no plan: {error}.")
        return None


def _plan_context(form: StudyPlanForm, plan: StudyPlan | None) -> dict:
    figure = FIGURE_LABELS[form.cleaned_data.get("figure", "auc")]
    if plan is None:
        return {"plan": None, "figure": figure}
    return {
        "plan": plan,
        "rows": plan_rows(plan),
        "smallest_text": cell_text(plan, plan.smallest) if plan.smallest else "",
        "confidence": f"{100 * (1 - plan.alpha):g}%",
        "figure": figure,
    }


def _typed_in_url(pilot: Pilot) -> str:
    """The typed-in planner with this pilot's components filled in, to try other values of them."""
    components = pilot.components
    if components is None:
        return ""
    values = {
        "figure": pilot.figure,
        "pilot_cases": components.n_cases,
        "var_reader": f"{components.var_reader:.6g}",
        "var_error": f"{components.var_error:.6g}",
        "cov2": f"{components.cov2:.6g}",
    }
    if CHANCE_LEVEL[pilot.figure] is None:
        values["target"] = "half_width"
    return "?" + urlencode(values)
