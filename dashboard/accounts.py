"""Setting a password from a link: a password reset, or an invitation to a workspace. Django's
own views and tokens; each records the new password in the audit log and logs the person in.
Asking for a reset queues its email (batches.invitations) instead of sending it in the request."""

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm, SetPasswordForm
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.urls import reverse_lazy

from batches import tasks
from batches.invitations import invitation_tokens
from batches.operations import accounts

# Two backends are configured (django-axes and the model backend): name the one to log in by.
LOGIN_BACKEND = "django.contrib.auth.backends.ModelBackend"


class QueuedPasswordResetForm(PasswordResetForm):
    """Django's reset form, whose email is sent by a task. The same work is done for an address
    with a login and one without (one query, one task queued; the task of an unknown address
    sends nothing), so the answer's time does not tell which it was."""

    def save(self, *args: Any, **kwargs: Any) -> None:
        found: list[int | None] = [user.pk for user in self.get_users(self.cleaned_data["email"])]
        for user_pk in found or [None]:
            tasks.send_password_reset.delay_on_commit(user_pk)


class AskForResetView(auth_views.PasswordResetView):
    form_class = QueuedPasswordResetForm


class ResetPasswordView(auth_views.PasswordResetConfirmView):
    post_reset_login = True
    post_reset_login_backend = LOGIN_BACKEND
    success_url = reverse_lazy("password_reset_complete")
    audit_target = "password reset"

    def form_valid(self, form: "SetPasswordForm[User]") -> HttpResponse:
        response = super().form_valid(form)
        accounts.password_set(form.user, how=self.audit_target, request=self.request)
        return response


class AcceptInvitationView(ResetPasswordView):
    token_generator = invitation_tokens
    template_name = "registration/invitation_accept.html"
    success_url = reverse_lazy("home")
    audit_target = "invitation accepted"
