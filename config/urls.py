from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/generation/", include("generation.api")),
    path("api/cleanup/", include("cleanup.api")),
    path("api/", include("readerstudy.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
    path("generation/", include("generation.urls")),
    path("cleanup/", include("cleanup.urls")),
    path("training/", include("training.urls")),
    path("", include("readerstudy.urls")),
]
