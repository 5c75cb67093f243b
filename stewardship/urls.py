from django.urls import path

from stewardship import views

app_name = "steward"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("queue/<slug:kind_slug>/", views.queue, name="queue"),
    path("tasks/bulk", views.tasks_bulk, name="tasks-bulk"),
    path("tasks/<int:task_id>/", views.task_detail, name="task"),
    path("tasks/<int:task_id>/decide", views.task_decide, name="task-decide"),
    path("tasks/<int:task_id>/claim", views.task_claim, name="task-claim"),
    path("tasks/<int:task_id>/release", views.task_release, name="task-release"),
    path("tasks/<int:task_id>/assign", views.task_assign, name="task-assign"),
    path("golden/<int:golden_id>/", views.golden_detail, name="golden"),
    path("golden/<int:golden_id>/split", views.golden_split, name="golden-split"),
    path("golden/<int:golden_id>/erase", views.golden_erase, name="golden-erase"),
    path(
        "golden/<int:golden_id>/relationships",
        views.relationship_add,
        name="relationship-add",
    ),
    path(
        "golden/<int:golden_id>/relationships/<int:relationship_id>",
        views.relationship_change,
        name="relationship-change",
    ),
    path("operations/<int:operation_id>/undo", views.operation_undo, name="operation-undo"),
    path("quarantine/", views.quarantine_list, name="quarantine"),
    path("quarantine/<int:payload_id>/", views.quarantine_detail, name="quarantine-detail"),
    path("quarantine/<int:payload_id>/replay", views.quarantine_replay, name="quarantine-replay"),
    path(
        "quarantine/<int:payload_id>/discard", views.quarantine_discard, name="quarantine-discard"
    ),
]
