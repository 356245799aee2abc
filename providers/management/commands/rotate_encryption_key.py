from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.management.base import CommandError
from django.db import transaction

from audit.services import audit_record
from llmproxy.management import ProxyCommand
from providers import crypto
from providers.models import Provider


class Command(ProxyCommand):
    help = (
        "Re-encrypt every stored provider credential under the first key of LLMPROXY_ENCRYPTION_KEY. "
        "Rotation: put the new key first and keep the old one after it (NEW,OLD), restart the proxy, "
        "run this, then remove the old key. Nothing is written unless every credential decrypts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Check every credential, write nothing.")

    def handle(self, *args, dry_run, **options):
        keys = settings.LLMPROXY_ENCRYPTION_KEYS
        if not keys:
            raise CommandError("LLMPROXY_ENCRYPTION_KEY is not set: nothing to rotate to")
        try:
            first = Fernet(keys[0].encode())
        except (ValueError, TypeError):
            raise CommandError("the first key of LLMPROXY_ENCRYPTION_KEY is not a Fernet key")
        with_credential = Provider.objects.exclude(encrypted_api_key="").order_by("pk")
        stored = list(with_credential.values_list("pk", "name", "encrypted_api_key"))
        rotated, unreadable = [], []
        for pk, name, token in stored:
            try:
                rotated.append((pk, token, crypto.reencrypt(token)))
            except crypto.CredentialError:
                unreadable.append(name)
        if unreadable:
            raise CommandError(
                f"cannot decrypt the credential of provider(s) {', '.join(sorted(unreadable))} with any key "
                "of LLMPROXY_ENCRYPTION_KEY; add the key they were stored with; nothing written"
            )
        if dry_run:
            self.stdout.write(f"{len(rotated)} provider credential(s) would be re-encrypted (dry run)")
            return
        changed = 0
        with transaction.atomic():
            for pk, old, new in rotated:
                # Conditional: a credential replaced meanwhile (admin, API) is left as it now is.
                same = Provider.objects.filter(pk=pk, encrypted_api_key=old)
                changed += same.update(encrypted_api_key=new)
            audit_record(
                actor=self.audit_actor,
                action="provider.credentials_reencrypt",
                metadata={"reencrypted": changed, "keys_configured": len(keys)},
            )
        self.stdout.write(f"{changed} provider credential(s) re-encrypted under the first key")
        leftover = self.not_under_first_key(first)
        if leftover:
            names = ", ".join(leftover)
            self.stdout.write(f"still under an older key (changed meanwhile): {names}; run again")
        elif len(keys) > 1:
            self.stdout.write(
                "every stored credential now decrypts with the first key: the others can be removed"
            )

    @staticmethod
    def not_under_first_key(first):
        leftover = []
        stored = Provider.objects.exclude(encrypted_api_key="").values_list("name", "encrypted_api_key")
        for name, token in stored:
            try:
                first.decrypt(token.encode())
            except InvalidToken:
                leftover.append(name)
        return sorted(leftover)
