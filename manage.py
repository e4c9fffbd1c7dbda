#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    if sys.argv[1:2] == ["validatebatch"]:
        # A file check needs neither the database nor Django's start-up (a third of a second):
        # unless it names a workspace, it runs on intake's own modules.
        from batches.intake import command_line

        if not command_line.wants_the_database(sys.argv[2:]):
            command_line.main(sys.argv[2:])
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
