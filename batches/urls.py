from django.urls import path

from batches.views import batch_list, batch_page, downloads, header, results, uploads

batch = "w/<slug:slug>/batches/<str:api_id>/"
submission = "w/<slug:slug>/submissions/<uuid:key>/"

urlpatterns = [
    # Lists
    path("", batch_list.home, name="home"),
    path("workspaces/", batch_list.workspace_list, name="workspace_list"),
    path("w/<slug:slug>/", batch_list.workspace_batches, name="workspace_batches"),
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
