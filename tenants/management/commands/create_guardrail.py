from django.core.management.base import CommandError

from llmproxy.guardrails.regex_timeout import UnsafePattern, check_pattern
from llmproxy.guardrails.services import guardrail_create
from llmproxy.management import ProxyCommand
from tenants.models import Guardrail

NAME_MAX = Guardrail._meta.get_field("name").max_length


def name_argument(text):
    name = text.strip()
    if not name or len(name) > NAME_MAX:
        raise CommandError(f"a guardrail name is 1 to {NAME_MAX} characters, not {text!r}")
    return name


def list_argument(text):
    return list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))


class Command(ProxyCommand):
    help = (
        "Create a guardrail: a tenant's content rule on prompts (request), answers (response) or both. "
        "block refuses the request with 400 guardrail_blocked (or stops a streamed answer); mask replaces "
        "matches with [REDACTED:DETECTOR]; flag lets it through and records it. --shadow: record only."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", type=name_argument, help="Unique in the tenant, e.g. no-card-numbers.")
        self.add_tenant_argument(parser, required=True)
        parser.add_argument("--detector", required=True, choices=Guardrail.Detector.values)
        parser.add_argument("--pattern", metavar="REGEX", help="The regular expression (--detector regex).")
        parser.add_argument(
            "--words",
            type=list_argument,
            metavar="W1,W2",
            help="Comma-separated words or phrases (--detector wordlist).",
        )
        parser.add_argument("--direction", required=True, choices=Guardrail.Direction.values)
        parser.add_argument("--action", required=True, choices=Guardrail.Action.values)
        parser.add_argument(
            "--shadow", action="store_true", help="Change nothing; record what the rule would have done."
        )
        parser.add_argument(
            "--models",
            type=list_argument,
            default=[],
            metavar="M1,M2",
            help="Only requests for these public models (default: all).",
        )
        parser.add_argument(
            "--keys",
            type=list_argument,
            default=[],
            metavar="PREFIX,PREFIX",
            help="Only requests made with these API keys (default: all the tenant's keys).",
        )

    def handle(
        self,
        *args,
        name,
        tenant,
        detector,
        pattern,
        words,
        direction,
        action,
        shadow,
        models,
        keys,
        **options,
    ):
        tenant = self.get_tenant(tenant)
        if detector == Guardrail.Detector.REGEX:
            if not pattern:
                raise CommandError("--detector regex needs --pattern REGEX")
            try:
                check_pattern(pattern)
            except UnsafePattern as exc:
                raise CommandError(f"--pattern refused: {exc}")
        elif pattern is not None:
            raise CommandError("--pattern is only for --detector regex")
        if detector == Guardrail.Detector.WORDLIST and not words:
            raise CommandError("--detector wordlist needs --words W1,W2")
        if detector != Guardrail.Detector.WORDLIST and words is not None:
            raise CommandError("--words is only for --detector wordlist")
        api_keys = [self.get_api_key(prefix, tenant=tenant) for prefix in keys]
        # The service refuses a name already taken in the tenant (a ValidationError: a CommandError here).
        guardrail = guardrail_create(
            tenant=tenant,
            name=name,
            detector=detector,
            direction=direction,
            action=action,
            shadow=shadow,
            pattern=pattern or "",
            words=words or (),
            models=models,
            api_keys=api_keys,
            actor=self.audit_actor,
        )
        scope = []
        if models:
            scope.append("models " + ",".join(models))
        if api_keys:
            scope.append("keys " + ",".join(k.prefix for k in api_keys))
        self.stdout.write(
            f"created guardrail {guardrail.name} in tenant {tenant.slug}: {action} {detector} "
            f"on {direction}{' (shadow: record only)' if shadow else ''}"
            f"{'; only ' + ', '.join(scope) if scope else ''}"
        )
