from django.urls import include, path

from batches import views

batch = "w/<slug:slug>/batches/<str:api_id>/"

urlpatterns = [
    path("", views.home, name="home"),
    path("poll/", views.poll, name="dashboard_poll"),
    path(
        "preferences/notifications/",
        views.notification_preference,
        name="notification_preference",
    ),
    path("workspaces/", views.workspace_list, name="workspace_list"),
    path("w/<slug:slug>/", views.workspace_batches, name="workspace_batches"),
    path(batch, views.batch_detail, name="batch_detail"),
    path(f"{batch}cancel/", views.batch_cancel, name="batch_cancel"),
    path(f"{batch}delete/", views.batch_delete, name="batch_delete"),
    path(f"{batch}refresh/", views.batch_refresh, name="batch_refresh"),
    path(f"{batch}resubmit/", views.batch_resubmit, name="batch_resubmit"),
    path(f"{batch}results/", views.batch_results, name="batch_results"),
    path(f"{batch}results/<str:custom_id>/", views.result_detail, name="result_detail"),
    path(f"{batch}results/<str:custom_id>/raw/", views.result_raw, name="result_raw"),
    path(f"{batch}download/results.jsonl", views.download_jsonl, name="download_jsonl"),
    path(f"{batch}download/results.csv", views.download_csv, name="download_csv"),
    path(f"{batch}download/answers.csv", views.download_answers, name="download_answers"),
    path("", include("batches.urls_intake")),
]
