from django.core.management.base import CommandError
from django.db import transaction

from audit.models import RequestLog
from audit.services import audit_record
from llmproxy.management import ProxyCommand, whole_number_argument
from tenants.models import User

BATCH_SIZE = 2000


class Command(ProxyCommand):
    help = (
        "Erase the stored prompt and completion text of every request made with a user's API keys "
        "(tenants that opted in to storing prompts), in short batches. The request rows themselves "
        "(tokens, cost, status) stay. Rows of keys deleted since cannot be traced to the user."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--user",
            type=whole_number_argument(minimum=1),
            required=True,
            metavar="ID",
            help="The user's id.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count the requests, erase nothing.")

    def handle(self, *args, user, dry_run, **options):
        target = User.objects.select_related("tenant").filter(pk=user).first()
        if target is None:
            raise CommandError(f"unknown user id {user}")
        rows = RequestLog.objects.filter(api_key__user=target).exclude(prompt="", completion="")
        who = f"user {target.get_username()} (id {target.pk})"
        if dry_run:
            self.stdout.write(f"{rows.count()} request(s) of {who} hold text (dry run)")
            return
        erased = 0
        last_id = 0
        while True:
            window = rows.filter(id__gt=last_id).order_by("id")
            upper = next(iter(window.values_list("id", flat=True)[BATCH_SIZE - 1 : BATCH_SIZE]), None)
            batch = window.filter(id__lte=upper) if upper is not None else window
            with transaction.atomic():
                erased += batch.order_by().update(prompt="", completion="")
            if upper is None:
                break
            last_id = upper
        audit_record(
            actor=self.audit_actor,
            action="user.erase_data",
            target=target,
            tenant=target.tenant,
            metadata={"requests_erased": erased},
        )
        self.stdout.write(f"erased the prompt and completion text of {erased} request(s) of {who}")
