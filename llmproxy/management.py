"""What the project's manage.py commands share: --tenant lookup, typed arguments, audit actor."""

import argparse
import re
import sys
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from keys import secrets
from keys.models import ApiKey
from llmproxy.durations import parse_duration
from tenants.models import Tenant, User

# PositiveIntegerField's ceiling on every database Django supports.
MAX_WHOLE_NUMBER = 2**31 - 1

ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Longer than any sensible expiry, grace or retention, short enough that now +/- it is a datetime.
MAX_DURATION = timedelta(days=100 * 365)


def duration_argument(text):
    try:
        duration = parse_duration(text)
    except ValueError as exc:
        raise CommandError(str(exc))
    if duration > MAX_DURATION:
        raise CommandError(f"duration {text!r} is longer than 100 years")
    return duration


def positive_duration_argument(text):
    duration = duration_argument(text)
    if not duration:
        raise CommandError(f"duration {text!r} must be more than 0")
    return duration


def positive_decimal_argument(text):
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CommandError(f"{text!r} is not a number")
    if not value.is_finite() or value < 0:
        raise CommandError(f"{text!r} must be a number of at least 0")
    return value


def whole_number_argument(minimum=0, maximum=MAX_WHOLE_NUMBER):
    """An argparse type for an integer in [minimum, maximum]."""

    def whole_number(text):
        try:
            value = int(text)
        except ValueError:
            raise CommandError(f"{text!r} is not a whole number")
        if not minimum <= value <= maximum:
            raise CommandError(f"{text!r} must be between {minimum} and {maximum}")
        return value

    return whole_number


def env_var_argument(text):
    if not ENV_VAR_RE.match(text):
        raise CommandError(f"{text!r} is not an environment variable name (letters, digits and _)")
    return text


def prefix_argument(text):
    if secrets.split(text):
        # Someone pasted the whole key: refuse it rather than echo a secret into logs.
        raise CommandError("give the key's prefix (lp-AAAAAAAA), not the whole key")
    if not secrets.PREFIX_RE.match(text):
        raise CommandError(f"malformed key prefix {text!r}: a prefix looks like lp-AAAAAAAA")
    return text


def validation_message(exc):
    """A ValidationError as one line."""
    return "; ".join(message.rstrip(".") for message in exc.messages)


class ProxyCommand(BaseCommand):
    """Base for the operators' commands. Errors are CommandError: one line, exit 1, nothing written."""

    # Recorded as the actor of the audit rows a command writes.
    audit_actor = "command"

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        # Bad arguments become a CommandError (one line, exit 1), from the command
        # line as from call_command(), instead of argparse's usage dump and exit 2.
        def error(message):
            raise CommandError(message)

        parser.error = error
        return parser

    def run_from_argv(self, argv):
        # Django parses argv outside its own CommandError handler: report a bad
        # argument (from argparse or from a typed argument) the same way.
        try:
            super().run_from_argv(argv)
        except CommandError as exc:
            if "--traceback" in argv:
                raise
            self.stderr.write(f"CommandError: {exc}")
            sys.exit(exc.returncode)

    def execute(self, *args, **options):
        if not getattr(self, "_called_from_command_line", False):
            self.parse_keyword_options(options)
        try:
            return super().execute(*args, **options)
        except ValidationError as exc:
            raise CommandError(validation_message(exc))
        except IntegrityError as exc:
            # A concurrent change won the race; our transaction was rolled back.
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(f"conflicting change, nothing written ({first_line}); try again")

    def parse_keyword_options(self, options):
        """Type and check the options call_command() was given as keyword arguments.

        Django parses only the positional and required ones; the others reach
        handle() as given, so call_command("rotate_api_key", prefix, grace="1h")
        would hand a string where --grace 1h gives a timedelta.
        """
        parser = self.create_parser("manage.py", self.__module__.rpartition(".")[2])
        for action in parser._actions:
            value = options.get(action.dest)
            many = isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+")
            values = value if many and isinstance(value, list | tuple) else [value]
            if not values or not all(isinstance(v, str) for v in values):
                continue  # not given, or already parsed
            if action.type is not None:
                values = [action.type(v) for v in values]
            if action.choices is not None:
                for v in values:
                    if v not in action.choices:
                        choices = ", ".join(map(repr, action.choices))
                        raise CommandError(
                            f"argument {'/'.join(action.option_strings) or action.dest}: "
                            f"invalid choice: {v!r} (choose from {choices})"
                        )
            options[action.dest] = values if many else values[0]

    def add_tenant_argument(self, parser, *, required=False, help_text="Tenant slug."):
        parser.add_argument("--tenant", required=required, help=help_text)

    def get_tenant(self, slug):
        if slug is None:
            return None
        try:
            return Tenant.objects.get(slug=slug)
        except Tenant.DoesNotExist:
            raise CommandError(f"unknown tenant {slug!r}")

    def get_api_key(self, prefix, *, tenant=None):
        keys = ApiKey.objects.select_related("tenant")
        if tenant is not None:
            keys = keys.for_tenant(tenant)
        try:
            return keys.get(prefix=prefix)
        except ApiKey.DoesNotExist:
            where = f" in tenant {tenant.slug}" if tenant is not None else ""
            raise CommandError(f"unknown API key {prefix}{where}")

    def get_user(self, username, *, tenant=None):
        users = User.objects.all()
        if tenant is not None:
            users = users.filter(tenant=tenant)
        try:
            return users.get(username=username)
        except User.DoesNotExist:
            where = f" in tenant {tenant.slug}" if tenant is not None else ""
            raise CommandError(f"unknown user {username!r}{where}")
