from django.urls import path

from sync import api

urlpatterns = [
    path("events", api.EventFeedView.as_view(), name="events"),
    path("events/ack", api.EventAckView.as_view(), name="events-ack"),
    path("<slug:domain>/snapshot", api.SnapshotView.as_view(), name="golden-snapshot"),
]
