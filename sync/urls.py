from django.urls import path

from sync import api
from sync import subscriber_api as subs

urlpatterns = [
    path("events", api.EventFeedView.as_view(), name="events"),
    path("events/ack", api.EventAckView.as_view(), name="events-ack"),
    path("subscribers", subs.SubscriberListView.as_view(), name="subscribers"),
    path("subscribers/<slug:code>", subs.SubscriberDetailView.as_view(), name="subscriber"),
    path(
        "subscribers/<slug:code>/rotate-secret",
        subs.SubscriberRotateSecretView.as_view(),
        name="subscriber-rotate-secret",
    ),
    path(
        "subscribers/<slug:code>/finish-rotation",
        subs.SubscriberFinishRotationView.as_view(),
        name="subscriber-finish-rotation",
    ),
    path(
        "subscribers/<slug:code>/pause", subs.SubscriberPauseView.as_view(), name="subscriber-pause"
    ),
    path(
        "subscribers/<slug:code>/resume",
        subs.SubscriberResumeView.as_view(),
        name="subscriber-resume",
    ),
    path(
        "subscribers/<slug:code>/reset-circuit",
        subs.SubscriberCircuitResetView.as_view(),
        name="subscriber-reset-circuit",
    ),
    path(
        "subscribers/<slug:code>/dead-letters",
        subs.DeadLetterListView.as_view(),
        name="subscriber-dead-letters",
    ),
    path(
        "subscribers/<slug:code>/dead-letters/replay",
        subs.DeadLetterReplayAllView.as_view(),
        name="subscriber-dead-letters-replay",
    ),
    path(
        "subscribers/<slug:code>/dead-letters/<int:pk>/replay",
        subs.DeadLetterReplayView.as_view(),
        name="subscriber-dead-letter-replay",
    ),
    path("<slug:domain>/snapshot", api.SnapshotView.as_view(), name="golden-snapshot"),
]
