"""Coordinator pages: create and edit studies, add cases, assign readers, follow progress."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from readerstudy.blinding import FEATURE_LABELS, study_blinding_audit
from readerstudy.forms import AssignReadersForm, CaseUploadForm, FolderImportForm, StudyForm
from readerstudy.imports import IncomingFile, cases_import, import_job_start
from readerstudy.models import Case, ImportJob, ReaderSession, Study
from readerstudy.roles import coordinator_required
from readerstudy.selectors import study_case_counts, study_reader_progress
from readerstudy.services import reader_assign, reader_unassign, study_create, study_update
from readerstudy.serving import blinded_png_response


@coordinator_required
@require_GET
def study_list(request: HttpRequest) -> HttpResponse:
    studies = Study.objects.all().select_related("created_by")
    return render(request, "readerstudy/study_list.html", {"studies": studies})


@coordinator_required
def study_new(request: HttpRequest) -> HttpResponse:
    form = StudyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            study = study_create(created_by=request.user, **form.settings_values())
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Study “{study.name}” created. Add cases and assign readers next.")
            return redirect("study_detail", study_pk=study.pk)
    return render(request, "readerstudy/study_form.html", {"form": form, "study": None})


@coordinator_required
def study_edit(request: HttpRequest, study_pk: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_pk)
    form = StudyForm(request.POST or None, instance=Study.objects.get(pk=study.pk))
    if request.method == "POST" and form.is_valid():
        try:
            study_update(
                study=study,
                changed_by=request.user,
                blinding_acknowledged=form.cleaned_data["blinding_acknowledged"],
                blinding_reason=form.cleaned_data["blinding_reason"],
                **form.settings_values(),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Study settings saved.")
            return redirect("study_detail", study_pk=study.pk)
    return render(request, "readerstudy/study_form.html", {"form": form, "study": study})


@coordinator_required
@require_GET
def study_detail(request: HttpRequest, study_pk: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_pk)
    context = {
        "study": study,
        "counts": study_case_counts(study=study),
        "progress": study_reader_progress(study=study),
        "assign_form": AssignReadersForm(study=study),
        "upload_form": CaseUploadForm(),
        "folder_form": FolderImportForm(),
        "import_jobs": study.import_jobs.all()[:5],
        "audit": study_blinding_audit(study=study),
        "feature_labels": FEATURE_LABELS,
    }
    return render(request, "readerstudy/study_detail.html", context)


@coordinator_required
@require_GET
def case_list(request: HttpRequest, study_pk: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_pk)
    cases = study.cases.all()
    return render(request, "readerstudy/case_list.html", {"study": study, "cases": cases})


@coordinator_required
@require_GET
def case_image(request: HttpRequest, study_pk: int, case_pk: int) -> HttpResponse:
    case = get_object_or_404(Case, pk=case_pk, study_id=study_pk)
    return blinded_png_response(case.image)


@coordinator_required
@require_POST
def case_upload(request: HttpRequest, study_pk: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_pk)
    form = CaseUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return render(
            request,
            "readerstudy/import_report.html",
            {"study": study, "form_errors": form.errors, "report": None},
            status=400,
        )
    files = [IncomingFile(name=upload.name, data=upload.read()) for upload in form.cleaned_data["files"]]
    report = cases_import(
        study=study,
        files=files,
        truth=form.cleaned_data["truth"],
        source=Case.Source.UPLOAD,
        is_practice=form.cleaned_data["is_practice"],
        generator=form.cleaned_data["generator"],
    )
    return render(request, "readerstudy/import_report.html", {"study": study, "report": report})


@coordinator_required
@require_POST
def case_import_folder(request: HttpRequest, study_pk: int) -> HttpResponse:
    """Queue a folder import for a worker and show its live progress."""
    study = get_object_or_404(Study, pk=study_pk)
    form = FolderImportForm(request.POST)
    if not form.is_valid():
        return render(
            request,
            "readerstudy/import_report.html",
            {"study": study, "form_errors": form.errors, "report": None},
            status=400,
        )
    job = import_job_start(
        study=study,
        created_by=request.user,
        folder=form.cleaned_data["folder"],
        truth=form.cleaned_data["truth"],
        generator=form.cleaned_data["generator"],
        is_practice=form.cleaned_data["is_practice"],
    )
    return redirect("import_job", study_pk=study.pk, job_pk=job.pk)


@coordinator_required
@require_GET
def import_job(request: HttpRequest, study_pk: int, job_pk: int) -> HttpResponse:
    job = get_object_or_404(ImportJob.objects.select_related("study"), pk=job_pk, study_id=study_pk)
    template = "readerstudy/import_job.html#job" if request.headers.get("HX-Request") else "readerstudy/import_job.html"
    return render(request, template, {"study": job.study, "job": job})


@coordinator_required
@require_POST
def readers_assign(request: HttpRequest, study_pk: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_pk)
    form = AssignReadersForm(request.POST, study=study)
    if form.is_valid():
        for reader in form.cleaned_data["readers"]:
            reader_assign(study=study, reader=reader)
        names = ", ".join(reader.username for reader in form.cleaned_data["readers"])
        messages.success(request, f"Assigned: {names}.")
    else:
        messages.error(request, "Choose at least one reader to assign.")
    return redirect("study_detail", study_pk=study.pk)


@coordinator_required
@require_POST
def reader_remove(request: HttpRequest, study_pk: int, session_pk: int) -> HttpResponse:
    session = get_object_or_404(ReaderSession, pk=session_pk, study_id=study_pk)
    try:
        reader_unassign(session=session)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{session.reader.username} is no longer assigned.")
    return redirect("study_detail", study_pk=study_pk)
