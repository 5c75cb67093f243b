from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from matching.api import MatchSearchView


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers.  Readiness checks come with the operations work."""
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("", RedirectView.as_view(pattern_name="steward:dashboard"), name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("steward/", include("stewardship.urls")),
    path("api/v1/steward/", include("stewardship.api.urls")),
    path("survivorship/", include("mdm.urls")),
    path("api/v1/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/redoc", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("api/v1/<slug:domain>/match", MatchSearchView.as_view(), name="match-search"),
    path("api/v1/", include("sync.urls")),
    path("api/v1/", include("mdm.api.urls")),
    path("api-auth/", include("rest_framework.urls")),
]
