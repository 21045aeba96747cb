from django.urls import path

from readerstudy.views import dashboard, planning, reading, studies

urlpatterns = [
    path("", reading.home, name="home"),
    path("read/<int:session_pk>/", reading.reading_page, name="reading_page"),
    path("read/<int:session_pk>/submit/", reading.reading_submit_view, name="reading_submit"),
    path("img/<str:token>", reading.reading_image, name="reading_image"),
    path("studies/", studies.study_list, name="study_list"),
    path("studies/new/", studies.study_new, name="study_new"),
    path("studies/<int:study_pk>/", studies.study_detail, name="study_detail"),
    path("studies/<int:study_pk>/edit/", studies.study_edit, name="study_edit"),
    path("studies/<int:study_pk>/cases/", studies.case_list, name="case_list"),
    path("studies/<int:study_pk>/cases/upload/", studies.case_upload, name="case_upload"),
    path("studies/<int:study_pk>/cases/import-folder/", studies.case_import_folder, name="case_import_folder"),
    path("studies/<int:study_pk>/imports/<int:job_pk>/", studies.import_job, name="import_job"),
    path("studies/<int:study_pk>/cases/<int:case_pk>/image", studies.case_image, name="case_image"),
    path("studies/<int:study_pk>/readers/", studies.readers_assign, name="readers_assign"),
    path("studies/<int:study_pk>/readers/<int:session_pk>/remove/", studies.reader_remove, name="reader_remove"),
    path("studies/<int:study_pk>/dashboard/", dashboard.study_dashboard, name="study_dashboard"),
    path("studies/<int:study_pk>/plan/", planning.study_plan, name="study_plan"),
    path("plan/", planning.plan_from_components, name="plan"),
    path("studies/<int:study_pk>/report/", dashboard.study_report, name="study_report"),
    path("studies/<int:study_pk>/exports/<str:slug>", dashboard.study_export, name="study_export"),
]
