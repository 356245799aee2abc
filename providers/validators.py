import ipaddress
import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

_HOSTNAME_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


def validate_base_url(url):
    """An http(s) URL with a host.

    Unlike URLField's validator this takes a single-label host such as a Docker
    Compose service name (``http://ollama:11434/v1``).
    """
    message = f"invalid base URL {url!r}: give an http:// or https:// URL with a host"
    if not url or len(url) > 500 or any(c.isspace() for c in url):
        raise ValidationError(message)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValidationError(message)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or parts.fragment or parts.username is not None:
        raise ValidationError(message)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME_RE.match(host):
            raise ValidationError(message)
