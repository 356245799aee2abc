import os

from django.core.management.base import CommandError

from llmproxy.management import ProxyCommand, env_var_argument
from tenants.models import User
from tenants.services import user_create


class Command(ProxyCommand):
    help = (
        "Create a user. A tenant is required unless the role is admin. With --password-env the "
        "password is read from that environment variable; an admin or tenant_admin can then log "
        "into the admin site, a user only into the REST API. Without it the account has no usable password."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=User.Role.values)
        self.add_tenant_argument(parser, help_text="Tenant slug (required unless --role admin).")
        parser.add_argument(
            "--password-env",
            type=env_var_argument,
            metavar="VAR",
            help="Environment variable holding the password (kept out of the shell history).",
        )

    def handle(self, *args, username, role, tenant, password_env, **options):
        tenant = self.get_tenant(tenant)
        if role != User.Role.ADMIN and tenant is None:
            raise CommandError(f"--tenant is required for the role {role}")
        if role == User.Role.ADMIN and tenant is not None:
            raise CommandError("a platform admin belongs to no tenant: drop --tenant")
        password = None
        if password_env:
            password = os.environ.get(password_env, "")
            if not password:
                raise CommandError(f"environment variable {password_env} is not set or empty")
        user = user_create(
            username=username, role=role, tenant=tenant, password=password, actor=self.audit_actor
        )
        where = f" in tenant {tenant.slug}" if tenant else ""
        self.stdout.write(f"created {role} {user.username}{where}")
