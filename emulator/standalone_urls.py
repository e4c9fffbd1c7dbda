"""The URLconf `runemulator` serves: the emulator alone, at the root (`/v1/...`)."""

from django.urls import include, path

urlpatterns = [path("", include("emulator.urls"))]
