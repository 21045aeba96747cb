"""Training pages, under /training/."""

from django.urls import path

from training import views

app_name = "training"

urlpatterns = [
    path("", views.training_home, name="home"),
    path("datasets/new/", views.dataset_new, name="dataset_new"),
    path("datasets/<int:dataset_pk>/", views.dataset_detail, name="dataset_detail"),
    path("runs/new/", views.run_new, name="run_new"),
    path("runs/<int:run_pk>/", views.run_detail, name="run_detail"),
    path("runs/<int:run_pk>/cancel/", views.run_cancel_view, name="run_cancel"),
    path("runs/<int:run_pk>/validation/<int:step>/<int:index>.png", views.validation_png, name="validation_png"),
]
