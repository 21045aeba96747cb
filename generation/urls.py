"""Generation pages, under /generation/."""

from django.urls import path

from generation import views

app_name = "generation"

urlpatterns = [
    path("", views.batch_list_view, name="batch_list"),
    path("batches/<int:batch_pk>/", views.batch_detail, name="batch_detail"),
    path("batches/<int:batch_pk>/cancel/", views.batch_cancel_view, name="batch_cancel"),
    path("batches/<int:batch_pk>/add-to-study/", views.batch_add_to_study_view, name="batch_add_to_study"),
    path("batches/<int:batch_pk>/images/<int:index>/", views.image_detail, name="image_detail"),
    path("batches/<int:batch_pk>/images/<int:index>.png", views.image_png, name="image_png"),
    path("batches/<int:batch_pk>/images/<int:index>.dcm", views.image_dicom, name="image_dicom"),
]
