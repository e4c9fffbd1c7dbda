from django.urls import path

from batches.views import (
    batch_list,
    batch_page,
    downloads,
    header,
    metrics,
    results,
    uploads,
    usage,
    workspace_settings,
)

batch = "w/<slug:slug>/batches/<str:api_id>/"
submission = "w/<slug:slug>/submissions/<uuid:key>/"

urlpatterns = [
    # For operators: Prometheus' scrape, behind its own token
    path("metrics", metrics.metrics, name="metrics"),
    # Lists
    path("", batch_list.home, name="home"),
    path("workspaces/", batch_list.workspace_list, name="workspace_list"),
    path("upload/", uploads.upload_choose, name="upload_choose"),
    # Usage, cost and budgets
    path("usage/", usage.usage_overview, name="usage"),
    path("w/<slug:slug>/usage/", usage.workspace_usage, name="workspace_usage"),
    path("w/<slug:slug>/", batch_list.workspace_batches, name="workspace_batches"),
    # A workspace's settings and audit log (its admins)
    path(
        "w/<slug:slug>/settings/",
        workspace_settings.workspace_settings,
        name="workspace_settings",
    ),
    path(
        "w/<slug:slug>/settings/connection/",
        workspace_settings.workspace_connection,
        name="workspace_connection",
    ),
    path(
        "w/<slug:slug>/settings/options/",
        workspace_settings.workspace_options,
        name="workspace_options",
    ),
    path(
        "w/<slug:slug>/settings/webhook-secret/",
        workspace_settings.webhook_secret,
        name="webhook_secret",
    ),
    path(
        "w/<slug:slug>/webhooks/<int:pk>/replay/",
        workspace_settings.webhook_replay,
        name="webhook_replay",
    ),
    path("w/<slug:slug>/members/add/", workspace_settings.member_add, name="member_add"),
    path("w/<slug:slug>/members/invite/", workspace_settings.member_invite, name="member_invite"),
    path(
        "w/<slug:slug>/members/<int:pk>/role/",
        workspace_settings.member_role,
        name="member_role",
    ),
    path(
        "w/<slug:slug>/members/<int:pk>/remove/",
        workspace_settings.member_remove,
        name="member_remove",
    ),
    path("w/<slug:slug>/audit/", workspace_settings.workspace_audit, name="workspace_audit"),
    path(
        "w/<slug:slug>/audit.csv",
        workspace_settings.workspace_audit_csv,
        name="workspace_audit_csv",
    ),
    # Every page's header
    path("poll/", header.poll, name="dashboard_poll"),
    path("poll/toasts/", header.acknowledge_toasts, name="acknowledge_toasts"),
    path(
        "preferences/notifications/",
        header.notification_preference,
        name="notification_preference",
    ),
    # One batch
    path(batch, batch_page.batch_detail, name="batch_detail"),
    path(f"{batch}cancel/", batch_page.batch_cancel, name="batch_cancel"),
    path(f"{batch}delete/", batch_page.batch_delete, name="batch_delete"),
    path(f"{batch}refresh/", batch_page.batch_refresh, name="batch_refresh"),
    path(f"{batch}name/", batch_page.batch_rename, name="batch_rename"),
    path(f"{batch}resubmit/", batch_page.batch_resubmit, name="batch_resubmit"),
    # Its results
    path(f"{batch}results/", results.batch_results, name="batch_results"),
    path(f"{batch}results/<str:custom_id>/", results.result_detail, name="result_detail"),
    path(f"{batch}results/<str:custom_id>/raw/", results.result_raw, name="result_raw"),
    # Uploads
    path("w/<slug:slug>/upload/", uploads.upload, name="upload"),
    path(submission, uploads.submission_detail, name="submission_detail"),
    path(f"{submission}template/", uploads.submission_template, name="submission_template"),
    path(f"{submission}preview/", uploads.submission_preview, name="submission_preview"),
    path(f"{submission}submit/", uploads.submission_submit, name="submission_submit"),
    path(f"{submission}stop/", uploads.submission_stop, name="submission_stop"),
    path(f"{submission}try/", uploads.submission_try, name="submission_try"),
    path(f"{submission}check/", uploads.submission_check, name="submission_check"),
    # Files
    path(f"{batch}download/results.jsonl", downloads.download_jsonl, name="download_jsonl"),
    path(f"{batch}download/results.csv", downloads.download_csv, name="download_csv"),
    path(f"{batch}download/answers.csv", downloads.download_answers, name="download_answers"),
    path(f"{submission}problems.csv", downloads.submission_report, name="submission_report"),
    path(
        f"{submission}valid-lines/",
        downloads.submission_valid_lines,
        name="submission_valid_lines",
    ),
    path(
        f"{submission}left-out-lines/",
        downloads.submission_left_out_lines,
        name="submission_left_out_lines",
    ),
    path(
        f"{submission}requests/<str:custom_id>/",
        downloads.submission_request,
        name="submission_request",
    ),
]
