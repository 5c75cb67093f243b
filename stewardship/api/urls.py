from django.urls import path

from stewardship.api import views

urlpatterns = [
    path("tasks", views.ReviewTaskListView.as_view(), name="steward-tasks"),
    path("tasks/decide", views.ReviewTaskBulkDecideView.as_view(), name="steward-tasks-decide"),
    path("tasks/<int:pk>", views.ReviewTaskDetailView.as_view(), name="steward-task"),
    path("tasks/<int:pk>/decide", views.ReviewTaskDecideView.as_view(), name="steward-task-decide"),
    path("tasks/<int:pk>/claim", views.ReviewTaskClaimView.as_view(), name="steward-task-claim"),
    path(
        "tasks/<int:pk>/release", views.ReviewTaskReleaseView.as_view(), name="steward-task-release"
    ),
    path("tasks/<int:pk>/assign", views.ReviewTaskAssignView.as_view(), name="steward-task-assign"),
]
