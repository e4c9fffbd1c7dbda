from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from batches.management.commands.createworkspace import parse_member
from batches.models import Workspace
from batches.operations import Refused
from batches.operations import members as member_operations


class Command(BaseCommand):
    help = (
        "Print a workspace's members and their roles; --add USER[:ROLE] adds a member or changes "
        "their role, --remove USER removes one (the last admin stays)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("workspace", help="the workspace's name or slug")
        parser.add_argument("--add", action="append", default=[], metavar="USER[:ROLE]")
        parser.add_argument("--remove", action="append", default=[], metavar="USER")

    def handle(self, workspace: str, add: list[str], remove: list[str], **options: Any) -> None:
        found = Workspace.objects.filter(name=workspace).first() or (
            Workspace.objects.filter(slug=workspace).first()
        )
        if found is None:
            raise CommandError(f"No workspace named {workspace!r}.")
        users = get_user_model().objects
        try:
            with transaction.atomic():  # all of the command's changes, or none
                for value in add:
                    username, role = parse_member(value)
                    user = users.filter(username=username).first()
                    if user is None:
                        raise CommandError(f"No such user: {username}.")
                    membership = found.memberships.filter(user=user).first()
                    if membership is None:
                        member_operations.add_member(found, None, user, role)
                    else:
                        member_operations.change_role(membership, None, role)
                for username in remove:
                    membership = found.memberships.filter(user__username=username).first()
                    if membership is None:
                        raise CommandError(f"{username} is not a member of {found.name}.")
                    member_operations.remove_member(membership, None)
        except Refused as refused:
            raise CommandError(str(refused)) from None
        for membership in found.memberships.select_related("user").order_by("user__username"):
            self.stdout.write(f"{membership.user.get_username()}\t{membership.role}")
