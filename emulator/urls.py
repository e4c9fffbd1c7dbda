from django.urls import path

app_name = "emulator"
urlpatterns: list = []
