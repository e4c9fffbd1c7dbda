"""The API's paths, without trailing slashes (the SDK never sends one).

Mounted by the dashboard under /emulator/ and by `runemulator` at the root
(`emulator.standalone_urls`), so the base URL is `http://host/emulator` or `http://host:PORT`.
"""

from django.urls import path, re_path

from emulator import views

app_name = "emulator"
urlpatterns = [
    path("v1/messages", views.messages, name="messages"),
    path("v1/messages/batches", views.batches, name="batches"),
    path("v1/messages/batches/<str:batch_id>", views.batch, name="batch"),
    path("v1/messages/batches/<str:batch_id>/cancel", views.batch_cancel, name="batch_cancel"),
    path("v1/messages/batches/<str:batch_id>/results", views.batch_results, name="batch_results"),
    path("v1/models", views.models_list, name="models"),
    path("v1/models/<str:model_id>", views.model_detail, name="model"),
    # Anything else answers in the API's error envelope rather than with an HTML page.
    re_path(r"^(?P<path>.*)$", views.not_found, name="not_found"),
]
