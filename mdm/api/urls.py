from django.urls import path

from mdm.api import golden_views, survivorship, views

urlpatterns = [
    path("domains", views.DomainListView.as_view(), name="domains"),
    path("ingest-runs", views.IngestRunListView.as_view(), name="ingest-runs"),
    path("ingest-runs/<int:pk>", views.IngestRunDetailView.as_view(), name="ingest-run"),
    path("quarantine", views.QuarantineListView.as_view(), name="quarantine"),
    path("quarantine/<int:pk>", views.QuarantineDetailView.as_view(), name="quarantine-detail"),
    path(
        "quarantine/<int:pk>/replay", views.QuarantineReplayView.as_view(), name="quarantine-replay"
    ),
    path(
        "quarantine/<int:pk>/discard",
        views.QuarantineDiscardView.as_view(),
        name="quarantine-discard",
    ),
    path(
        "<slug:domain>/survivorship-rules",
        survivorship.SurvivorshipRulesView.as_view(),
        name="survivorship-rules",
    ),
    path(
        "<slug:domain>/survivorship-rules/preview",
        survivorship.SurvivorshipPreviewView.as_view(),
        name="survivorship-preview",
    ),
    path(
        "<slug:domain>/survivorship-jobs/<int:pk>",
        survivorship.SurvivorshipJobView.as_view(),
        name="survivorship-job",
    ),
    path("<slug:domain>/golden", views.GoldenRecordListView.as_view(), name="golden-list"),
    path("<slug:domain>/golden/<int:pk>", views.GoldenRecordDetailView.as_view(), name="golden"),
    path("<slug:domain>/golden/merge", golden_views.GoldenMergeView.as_view(), name="golden-merge"),
    path(
        "<slug:domain>/golden/<int:pk>/split",
        golden_views.GoldenSplitView.as_view(),
        name="golden-split",
    ),
    path(
        "<slug:domain>/golden/<int:pk>/correct",
        golden_views.GoldenCorrectView.as_view(),
        name="golden-correct",
    ),
    path(
        "<slug:domain>/golden/<int:pk>/timeline",
        golden_views.GoldenTimelineView.as_view(),
        name="golden-timeline",
    ),
    path(
        "<slug:domain>/golden/operations",
        golden_views.GoldenOperationListView.as_view(),
        name="golden-operations",
    ),
    path(
        "<slug:domain>/golden/operations/<int:pk>",
        golden_views.GoldenOperationDetailView.as_view(),
        name="golden-operation",
    ),
    path(
        "<slug:domain>/golden/operations/<int:pk>/undo",
        golden_views.GoldenUndoView.as_view(),
        name="golden-undo",
    ),
    path("<slug:domain>/records", views.RecordCollectionView.as_view(), name="records"),
    path(
        "<slug:domain>/records/<path:source_key>/history",
        views.RecordHistoryView.as_view(),
        name="record-history",
    ),
    path(
        "<slug:domain>/records/<path:source_key>",
        views.RecordDetailView.as_view(),
        name="record-detail",
    ),
]
