"""The mdm app's pages in the hub (the API is in ``mdm.api.urls``)."""

from django.urls import path

from mdm import views

app_name = "mdm"

urlpatterns = [
    path("<slug:domain>/", views.survivorship_rules_page, name="survivorship-rules"),
    path(
        "<slug:domain>/preview",
        views.survivorship_rules_preview_page,
        name="survivorship-preview",
    ),
    path("<slug:domain>/save", views.survivorship_rules_save, name="survivorship-save"),
    path("<slug:domain>/jobs/<int:pk>", views.survivorship_job_fragment, name="survivorship-job"),
]
