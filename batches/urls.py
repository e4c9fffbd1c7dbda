from django.urls import include, path

from batches import views

urlpatterns = [
    path("", views.home, name="home"),
    path("workspaces/", views.workspace_list, name="workspace_list"),
    path("w/<slug:slug>/", views.workspace_batches, name="workspace_batches"),
    path("w/<slug:slug>/batches/<str:api_id>/", views.batch_detail, name="batch_detail"),
    path(
        "w/<slug:slug>/batches/<str:api_id>/results/",
        views.batch_results,
        name="batch_results",
    ),
    path("", include("batches.urls_intake")),
]
