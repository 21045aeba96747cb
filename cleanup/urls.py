"""Cleanup pages, under /cleanup/."""

from django.urls import path

from cleanup import views

app_name = "cleanup"

urlpatterns = [
    path("", views.job_list_view, name="job_list"),
    path("studies/<int:study_pk>/new/", views.job_new, name="job_new"),
    path("batches/<int:batch_pk>/new/", views.job_new_for_batch, name="job_new_for_batch"),
    path("jobs/<int:job_pk>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_pk>/cancel/", views.job_cancel, name="job_cancel"),
    path("jobs/<int:job_pk>/resume/", views.job_resume, name="job_resume"),
    path("jobs/<int:job_pk>/accept-unchanged/", views.job_accept_unchanged, name="job_accept_unchanged"),
    path("jobs/<int:job_pk>/review/", views.job_review, name="job_review"),
    path("items/<int:item_pk>/decide/", views.item_decide, name="item_decide"),
    path("items/<int:item_pk>/<str:kind>.png", views.item_image, name="item_image"),
]
