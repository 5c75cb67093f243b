from django.urls import path

from mdm.api import connectors, erasure, golden_views, relationships, survivorship, tokens, views

# The golden record read, the hottest route: config/urls.py resolves it before every other
# one (behind the ~60 patterns ahead of it, resolving took 6-8% of a read's time).  No
# earlier pattern matches its paths (tests/mdm/test_api_golden_read.py).
hot_urlpatterns = [
    path("<slug:domain>/golden/<int:pk>", views.GoldenRecordDetailView.as_view(), name="golden"),
]

urlpatterns = [
    path("connectors", connectors.ConnectorListView.as_view(), name="connectors"),
    path("connectors/<slug:name>", connectors.ConnectorDetailView.as_view(), name="connector"),
    path(
        "connectors/<slug:name>/runs",
        connectors.ConnectorRunListView.as_view(),
        name="connector-runs",
    ),
    path(
        "connectors/<slug:name>/run", connectors.ConnectorRunNowView.as_view(), name="connector-run"
    ),
    path(
        "connectors/<slug:name>/pause",
        connectors.ConnectorPauseView.as_view(),
        name="connector-pause",
    ),
    path(
        "connectors/<slug:name>/resume",
        connectors.ConnectorResumeView.as_view(),
        name="connector-resume",
    ),
    path("domains", views.DomainListView.as_view(), name="domains"),
    path("source-tokens", tokens.SourceTokenListView.as_view(), name="source-tokens"),
    path(
        "source-tokens/<slug:prefix>/rotate",
        tokens.SourceTokenRotateView.as_view(),
        name="source-token-rotate",
    ),
    path(
        "source-tokens/<slug:prefix>/revoke",
        tokens.SourceTokenRevokeView.as_view(),
        name="source-token-revoke",
    ),
    path("user-tokens", tokens.UserTokenListView.as_view(), name="user-tokens"),
    path(
        "user-tokens/<slug:prefix>/revoke",
        tokens.UserTokenRevokeView.as_view(),
        name="user-token-revoke",
    ),
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
    path("<slug:domain>/erasures", erasure.ErasureCollectionView.as_view(), name="erasures"),
    path("<slug:domain>/golden", views.GoldenRecordListView.as_view(), name="golden-list"),
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
    path(
        "<slug:domain>/golden/<int:pk>/relationships",
        relationships.GoldenRelationshipsView.as_view(),
        name="golden-relationships",
    ),
    path(
        "<slug:domain>/golden/<int:pk>/hierarchy",
        relationships.GoldenHierarchyView.as_view(),
        name="golden-hierarchy",
    ),
    path(
        "<slug:domain>/relationships/<int:pk>",
        relationships.RelationshipDetailView.as_view(),
        name="relationship",
    ),
    path(
        "<slug:domain>/relationships/<int:pk>/end",
        relationships.RelationshipEndView.as_view(),
        name="relationship-end",
    ),
    path(
        "<slug:domain>/relationships/<int:pk>/reparent",
        relationships.RelationshipReparentView.as_view(),
        name="relationship-reparent",
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
