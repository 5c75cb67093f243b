from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config import ops
from matching.api import MatchSearchView
from mdm.api.urls import hot_urlpatterns
from mdm.audit.api import AuditEntryListView
from mdm.views import quality_page

handler404 = "config.ops.not_found"

urlpatterns = [
    path("api/v1/", include(hot_urlpatterns)),  # first: the golden record read
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics, name="metrics"),
    path("", RedirectView.as_view(pattern_name="steward:dashboard"), name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("steward/", include("stewardship.urls")),
    path("api/v1/steward/", include("stewardship.api.urls")),
    path("survivorship/", include("mdm.urls")),
    path("quality/<slug:domain>/", quality_page, name="quality"),
    path("matching/", include("matching.urls")),
    path("api/v1/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/redoc", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("api/v1/audit", AuditEntryListView.as_view(), name="audit"),
    path("api/v1/<slug:domain>/match", MatchSearchView.as_view(), name="match-search"),
    path("api/v1/", include("sync.urls")),
    path("api/v1/", include("mdm.api.urls")),
    path("api-auth/", include("rest_framework.urls")),
]
