"""Upload, check, price and submit a file of requests (issue 5's pages)."""

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
        "w/<slug:slug>/submissions/<uuid:key>/problems.csv",
        views.submission_report,
        name="submission_report",
    ),
]
