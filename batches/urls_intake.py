"""Upload, check, price and submit a file of requests."""

from django.urls import path

from batches import views_intake as views

urlpatterns = [
    path("w/<slug:slug>/upload/", views.upload, name="upload"),
    path(
        "w/<slug:slug>/submissions/<uuid:key>/", views.submission_detail, name="submission_detail"
    ),
    path(
        "w/<slug:slug>/submissions/<uuid:key>/template/",
        views.submission_template,
        name="submission_template",
    ),
    path(
        "w/<slug:slug>/submissions/<uuid:key>/preview/",
        views.submission_preview,
        name="submission_preview",
    ),
    path(
        "w/<slug:slug>/submissions/<uuid:key>/submit/",
        views.submission_submit,
        name="submission_submit",
    ),
    path(
        "w/<slug:slug>/submissions/<uuid:key>/stop/",
        views.submission_stop,
        name="submission_stop",
    ),
    path(
        "w/<slug:slug>/submissions/<uuid:key>/check/",
        views.submission_check,
        name="submission_check",
    ),
    path(
        "w/<slug:slug>/submissions/<uuid:key>/problems.csv",
        views.submission_report,
        name="submission_report",
    ),
    path(
        "w/<slug:slug>/submissions/<uuid:key>/valid-lines/",
        views.submission_valid_lines,
        name="submission_valid_lines",
    ),
    path(
        "w/<slug:slug>/submissions/<uuid:key>/left-out-lines/",
        views.submission_left_out_lines,
        name="submission_left_out_lines",
    ),
    path(
        "w/<slug:slug>/submissions/<uuid:key>/requests/<str:custom_id>/",
        views.submission_request,
        name="submission_request",
    ),
]
