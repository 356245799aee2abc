"""REST API tokens: ``lpt-AAAAAAAA-<40 base62>``, checked like API keys (prefix lookup, keyed digest)."""

import re
import secrets as random

from django.db import transaction

from audit.services import audit_record
from keys import secrets
from llmproxy.api.models import AccessToken

TOKEN_RE = re.compile(r"^(lpt-[A-Za-z0-9]{8})-[A-Za-z0-9]{40}$")


def _random(n):
    return "".join(random.choice(secrets.ALPHABET) for _ in range(n))


@transaction.atomic
def access_token_issue(*, user, name=""):
    """Create a token for ``user``; return (token, plain). The plain token is never stored."""
    while True:
        prefix = "lpt-" + _random(8)
        if not AccessToken.objects.filter(prefix=prefix).exists():
            break
    plain = f"{prefix}-{_random(40)}"
    token = AccessToken.objects.create(prefix=prefix, digest=secrets.digest(plain), user=user, name=name)
    audit_record(
        actor=user,
        action="api_token.create",
        target=token,
        tenant=user.tenant,
        metadata={"prefix": prefix, "name": name},
    )
    return token, plain


def access_token_find(plain):
    """The token ``plain`` stands for, with its user, or None."""
    match = TOKEN_RE.match(plain or "")
    if match is None:
        return None
    token = AccessToken.objects.select_related("user").filter(prefix=match.group(1)).first()
    if token is None or not secrets.digest_matches(plain, token.digest):
        return None
    return token


@transaction.atomic
def access_token_revoke(*, token, actor):
    audit_record(
        actor=actor,
        action="api_token.revoke",
        target=token,
        tenant=token.user.tenant,
        metadata={"prefix": token.prefix},
    )
    token.delete()
