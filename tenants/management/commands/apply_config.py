import sys
from pathlib import Path

from django.core.management.base import CommandError

from llmproxy.configfile.apply import apply_config
from llmproxy.configfile.errors import ConfigError, ScopeError
from llmproxy.management import ProxyCommand


def read_file(path):
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}")


class Command(ProxyCommand):
    help = (
        "Make the database match a YAML config file (tenants, providers, model routes, quotas, model "
        "policies, guardrails; API keys to create), in one transaction. Prints each object created, "
        "changed (field: old -> new) or deleted, and each new API key once. Applying the same file again "
        "changes nothing."
    )
    audit_actor = "config"

    def add_arguments(self, parser):
        parser.add_argument("file", help="The YAML file; - reads standard input.")
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; write nothing.")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Also delete the providers, routes, quotas, model policies and guardrails the file does not "
            "describe, of each of those sections the file has. Tenants and API keys are never deleted.",
        )
        self.add_tenant_argument(
            parser,
            help_text="Apply (and prune) only this tenant's objects; the file's other entries and its shared "
            "ones are checked but left out.",
        )

    def handle(self, *args, file, dry_run, prune, tenant, **options):
        source = "<stdin>" if file == "-" else file
        try:
            report = apply_config(
                read_file(file),
                source=source,
                tenant=tenant,
                prune=prune,
                dry_run=dry_run,
                actor=self.audit_actor,
            )
        except (ConfigError, ScopeError) as exc:
            raise CommandError(str(exc))
        for line in report.lines:
            self.stdout.write(line)
        if report.left_out:
            self.stdout.write(f"left out {report.left_out} entries that are not of tenant {tenant}")
        self.stdout.write(report.summary())
