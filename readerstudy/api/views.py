"""API views: thin wrappers over the same services and selectors as the pages."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from readerstudy.analysis import study_analysis
from readerstudy.api import serializers as s
from readerstudy.api.permissions import IsCoordinator
from readerstudy.exports import EXPORT_FORMATS, ExportUnavailable, export_file, report_payload
from readerstudy.imports import IncomingFile, cases_import
from readerstudy.models import Case, ReaderSession, Reading, Study
from readerstudy.readings import Answer, ReadingRejected, reading_submit
from readerstudy.roles import READER, is_coordinator
from readerstudy.selectors import session_current_item, study_list_for, study_reader_progress
from readerstudy.services import reader_assign, study_create, study_update
from readerstudy.views.dashboard import export_response

User = get_user_model()


class StudyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Studies. Coordinators see and edit all of them; readers see the open studies they are assigned to."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]

    def get_queryset(self):
        return study_list_for(user=self.request.user).order_by("-created_at")

    def get_serializer_class(self):
        if is_coordinator(self.request.user):
            return s.StudySerializer
        return s.ReaderStudySerializer

    def get_permissions(self):
        if self.action in {"list", "retrieve"}:
            return super().get_permissions()
        return [*super().get_permissions(), IsCoordinator()]

    def perform_create(self, serializer):
        try:
            data = dict(serializer.validated_data)
            # A new study has no cases: the blinding gate has nothing to judge yet.
            data.pop("blinding_acknowledged", None)
            data.pop("blinding_reason", None)
            serializer.instance = study_create(created_by=self.request.user, **data)
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from exc

    def perform_update(self, serializer):
        try:
            serializer.instance = study_update(
                study=serializer.instance, changed_by=self.request.user, **serializer.validated_data
            )
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from exc

    @extend_schema(responses=s.CaseSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="cases")
    def cases(self, request, pk=None):
        study = self.get_object()
        page = self.paginate_queryset(study.cases.order_by("id"))
        return self.get_paginated_response(s.CaseSerializer(page, many=True).data)

    @extend_schema(request=s.CaseUploadSerializer, responses={201: s.ImportReportSerializer})
    @cases.mapping.post
    def upload_cases(self, request, pk=None):
        study = self.get_object()
        upload = s.CaseUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        report = cases_import(
            study=study,
            files=[IncomingFile(name=f.name, data=f.read()) for f in data["files"]],
            truth=data["truth"],
            source=Case.Source.UPLOAD,
            is_practice=data["is_practice"],
            generator=data["generator"],
        )
        code = status.HTTP_201_CREATED if report.imported else status.HTTP_400_BAD_REQUEST
        return Response(report.to_dict(), status=code)

    @extend_schema(responses=s.ReaderProgressSerializer(many=True))
    @action(detail=True, methods=["get"])
    def progress(self, request, pk=None):
        study = self.get_object()
        return Response(s.ReaderProgressSerializer(study_reader_progress(study=study), many=True).data)

    @extend_schema(request=s.AssignSerializer, responses=s.SessionSerializer(many=True))
    @action(detail=True, methods=["post"])
    def assign(self, request, pk=None):
        study = self.get_object()
        payload = s.AssignSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        names = payload.validated_data["readers"]
        readers = list(User.objects.filter(username__in=names, groups__name=READER, is_active=True))
        missing = sorted(set(names) - {reader.username for reader in readers})
        if missing:
            raise ValidationError({"readers": [f"Not an active reader: {', '.join(missing)}."]})
        sessions = [reader_assign(study=study, reader=reader) for reader in readers]
        annotated = ReaderSession.objects.filter(pk__in=[x.pk for x in sessions]).annotate(
            total=Count("items"), answered=Count("items__reading")
        )
        return Response(s.SessionSerializer(annotated, many=True).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.StudyReadingSerializer(many=True))
    @action(detail=True, methods=["get"])
    def readings(self, request, pk=None):
        study = self.get_object()
        readings = (
            Reading.objects.filter(item__session__study=study)
            .select_related("item__session__reader", "item__case")
            .order_by("item__session__reader__username", "item__position")
        )
        page = self.paginate_queryset(readings)
        return self.get_paginated_response(s.StudyReadingSerializer(page, many=True).data)

    @extend_schema(responses=s.StudyReportSerializer)
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        """The full statistics report, cached until the next reading; coordinators only."""
        study = self.get_object()
        return Response(report_payload(study, study_analysis(study=study)))

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "slug",
                str,
                OpenApiParameter.PATH,
                enum=[
                    "readings.csv",
                    "report.json",
                    "report.xlsx",
                    "imrmc",
                    "rjafroc.xlsx",
                    "rjafroc.csv",
                    "report.pdf",
                ],
                description="Export format; the file name is study-{id}-<format>.",
            )
        ],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The file."),
            409: OpenApiResponse(description="The study has no analysed readings to export yet."),
        },
    )
    @action(detail=True, methods=["get"], url_path=r"exports/(?P<slug>[a-z.]+)")
    def export(self, request, pk=None, slug=None):
        """One export of the study (the same files as the dashboard's download links); coordinators only."""
        study = self.get_object()
        if slug not in EXPORT_FORMATS:
            raise NotFound(f"Unknown export format {slug!r}; use one of {', '.join(EXPORT_FORMATS)}.")
        try:
            return export_response(export_file(study=study, slug=slug))
        except ExportUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)


class SessionViewSet(viewsets.ReadOnlyModelViewSet):
    """Reader sessions. A reader lists and uses only their own; coordinators can list everyone's progress."""

    serializer_class = s.SessionSerializer

    def get_queryset(self):
        sessions = ReaderSession.objects.select_related("study", "reader").annotate(
            total=Count("items", distinct=True), answered=Count("items__reading", distinct=True)
        )
        if self.action in {"next_item", "readings", "submit"} or not is_coordinator(self.request.user):
            sessions = sessions.filter(reader=self.request.user).exclude(study__status=Study.Status.DRAFT)
        return sessions.order_by("-created_at")

    @extend_schema(responses=s.NextItemSerializer)
    @action(detail=True, methods=["get"], url_path="next")
    def next_item(self, request, pk=None):
        session = self.get_object()
        item = session_current_item(session=session)
        if item is None:
            empty = dict.fromkeys(["item", "position", "is_practice", "number", "of", "image_url", "asks_quality"])
            return Response({"done": True, **empty})
        practice_total = session.items.filter(is_practice=True).count()
        return Response(
            {
                "done": False,
                "item": item.token,
                "position": item.position,
                "is_practice": item.is_practice,
                "number": item.position + 1 - (0 if item.is_practice else practice_total),
                "of": practice_total if item.is_practice else session.total - practice_total,
                "image_url": request.build_absolute_uri(reverse("reading_image", args=[item.token])),
                "asks_quality": session.study.asks_quality_for(item.case),
            }
        )

    @extend_schema(responses=s.ReadingOutSerializer(many=True))
    @action(detail=True, methods=["get"])
    def readings(self, request, pk=None):
        session = self.get_object()
        readings = Reading.objects.filter(item__session=session).select_related("item").order_by("item__position")
        return Response(s.ReadingOutSerializer(readings, many=True).data)

    @extend_schema(request=s.ReadingInSerializer, responses={201: s.SubmitOutSerializer, 200: s.SubmitOutSerializer})
    @readings.mapping.post
    def submit(self, request, pk=None):
        session = self.get_object()
        payload = s.ReadingInSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        answer = Answer.from_data(data)
        try:
            result = reading_submit(session=session, item_token=data["item"], answer=answer)
        except ReadingRejected as exc:
            raise ValidationError(exc.field_errors or {"detail": exc.message}) from exc
        if result.outcome == "locked":
            raise PermissionDenied("This case was already answered and answers cannot be changed in this study.")
        body = {"outcome": result.outcome, "reading": s.ReadingOutSerializer(result.reading).data}
        code = status.HTTP_201_CREATED if result.outcome == "created" else status.HTTP_200_OK
        return Response(body, status=code)
