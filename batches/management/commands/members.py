from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from batches import audit, roles
from batches.management.commands.createworkspace import parse_member
from batches.models import AuditEntry, Membership, Workspace

Action = AuditEntry.Action


class Command(BaseCommand):
    help = (
        "Print a workspace's members and their roles; --add USER[:ROLE] adds a member or changes "
        "their role, --remove USER removes one (the last admin stays)."
    )

    def add_arguments(self, parser):
        parser.add_argument("workspace", help="the workspace's name or slug")
        parser.add_argument("--add", action="append", default=[], metavar="USER[:ROLE]")
        parser.add_argument("--remove", action="append", default=[], metavar="USER")

    def handle(self, workspace, add, remove, **options):
        found = Workspace.objects.filter(name=workspace).first() or (
            Workspace.objects.filter(slug=workspace).first()
        )
        if found is None:
            raise CommandError(f"No workspace named {workspace!r}.")
        users = get_user_model().objects
        with transaction.atomic():
            list(roles.admins(found).select_for_update())
            for value in add:
                username, role = parse_member(value)
                user = users.filter(username=username).first()
                if user is None:
                    raise CommandError(f"No such user: {username}.")
                self._add(found, user, role)
            for username in remove:
                membership = found.memberships.filter(user__username=username).first()
                if membership is None:
                    raise CommandError(f"{username} is not a member of {found.name}.")
                if membership.role == Membership.Role.ADMIN and roles.admins(found).count() == 1:
                    raise CommandError(
                        f"{username} is the last admin of {found.name}: add another admin first."
                    )
                membership.delete()
                audit.record(Action.MEMBER_REMOVE, workspace=found, target=f"member {username}",
                             before={"role": membership.role})  # fmt: skip
        for membership in found.memberships.select_related("user").order_by("user__username"):
            self.stdout.write(f"{membership.user.get_username()}\t{membership.role}")

    def _add(self, workspace, user, role) -> None:
        membership = workspace.memberships.filter(user=user).first()
        name = f"member {user.get_username()}"
        if membership is None:
            Membership.objects.create(workspace=workspace, user=user, role=role)
            audit.record(Action.MEMBER_ADD, workspace=workspace, target=name, after={"role": role})
            return
        if membership.role == role:
            return
        if membership.role == Membership.Role.ADMIN and roles.admins(workspace).count() == 1:
            raise CommandError(
                f"{user.get_username()} is the last admin of {workspace.name}: add another admin "
                "first."
            )
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit.record(Action.MEMBER_ROLE, workspace=workspace, target=name,
                     before={"role": before}, after={"role": role})  # fmt: skip
