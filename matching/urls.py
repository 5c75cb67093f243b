"""The matching app's pages in the hub (search-before-create is in the API)."""

from django.urls import path

from matching import views

app_name = "matching"

urlpatterns = [
    path("<slug:domain>/model", views.match_model_page, name="model"),
]
