"""What the gateway hands the limiter and what it gets back (plain data: the hot path holds no ORM rows)."""

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class Limit:
    id: int  # QuotaLimit pk
    tenant_id: int  # every key of one request shares the hash tag {t<tenant_id>} (Redis Cluster)
    scope: str  # "tenant" | "user" | "key"
    metric: str  # "requests" | "tokens" | "cost"
    period: str  # "minute" | "hour" | "day" | "month" (calendar windows in UTC)
    limit: Decimal  # requests, tokens, or USD


@dataclass(frozen=True)
class Ask:
    input_tokens: int  # counted locally by the gateway
    max_output_tokens: int  # the client's max_tokens or the configured default; 0 for embeddings
    input_price: Decimal  # USD per million input tokens
    output_price: Decimal  # USD per million output tokens


@dataclass
class Decision:
    admitted: bool
    output_tokens: int  # output reservation granted: send it upstream as max_tokens when it is smaller
    reservation: object | None  # opaque, passed back to settle()
    denied: Limit | None  # the limit that refused
    retry_after: int  # seconds until that limit's window resets (>= 1) when denied, else 0
    headers: dict[str, str] = field(default_factory=dict)


class LimiterUnavailable(Exception):
    """Redis does not answer and the tenant's policy is fail closed: answer 503."""
