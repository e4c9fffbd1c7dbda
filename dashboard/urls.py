from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard import accounts, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    # Browsers and feed readers ask for /favicon.ico whatever the pages link to.
    path("favicon.ico", views.favicon, name="favicon"),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Passwords: reset by email, and the invitation link where a new member sets theirs.
    path("password/reset/", accounts.AskForResetView.as_view(), name="password_reset"),
    path(
        "password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        accounts.ResetPasswordView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path(
        "invitation/<uidb64>/<token>/",
        accounts.AcceptInvitationView.as_view(),
        name="accept_invitation",
    ),
    path("admin/", admin.site.urls),
    path("emulator/", include("emulator.urls")),
    path("", include("batches.urls")),
]
