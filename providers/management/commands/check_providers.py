import asyncio
import time

from django.core.management.base import CommandError

from llmproxy.management import ProxyCommand
from providers.adapters.base import UpstreamError
from providers.models import ModelRoute
from providers.router import attempt_once
from providers.routing_table import provider_target, route_target

# Probes in flight at once: enough to check many routes quickly, few enough
# not to look like a burst to a provider's rate limiter.
CONCURRENCY = 8

PROBE_TEXT = "ping"


def probe_request(upstream_model: str):
    """(endpoint, body) of the smallest request that shows the route works."""
    if "embed" in upstream_model.lower():
        return "embeddings", {"input": PROBE_TEXT}
    return "chat", {"messages": [{"role": "user", "content": PROBE_TEXT}], "max_tokens": 1}


async def _probe(target, semaphore):
    endpoint, body = probe_request(target.upstream_model)
    async with semaphore:
        started = time.perf_counter()
        try:
            await attempt_once(target, endpoint, body, stream=False)
        except UpstreamError as error:
            status = "timeout" if error.timeout else (str(error.status) if error.status else "error")
            return status, (time.perf_counter() - started) * 1000, error.message
        return "200", (time.perf_counter() - started) * 1000, ""


async def _probe_all(targets):
    from providers import http

    semaphore = asyncio.Semaphore(CONCURRENCY)
    try:
        return await asyncio.gather(*(_probe(target, semaphore) for target in targets))
    finally:
        await http.close()


def table(rows) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


class Command(ProxyCommand):
    help = (
        "Probe every active route with a minimal request (max_tokens 1) and print model, provider, "
        "upstream model, status and latency. Exits non-zero when a route fails. Circuit breakers are "
        "neither consulted nor changed."
    )

    def add_arguments(self, parser):
        self.add_tenant_argument(
            parser, help_text="Only the routes this tenant's requests use: its own and the shared ones."
        )

    def handle(self, *args, tenant, **options):
        tenant = self.get_tenant(tenant)
        routes = ModelRoute.objects.usable().select_related("provider", "tenant")
        if tenant is not None:
            routes = routes.visible_to(tenant)
        routes = list(routes.order_by("model", "tenant__slug", "priority", "-weight", "id"))
        if not routes:
            self.stdout.write("no active routes")
            return
        providers = {}
        targets = []
        for route in routes:
            if route.provider_id not in providers:
                providers[route.provider_id] = provider_target(route.provider)
            targets.append(route_target(route, providers[route.provider_id]))
        outcomes = asyncio.run(_probe_all(targets))

        rows = [("MODEL", "TENANT", "PROVIDER", "UPSTREAM MODEL", "STATUS", "LATENCY")]
        failures = []
        for route, (status, latency_ms, error) in zip(routes, outcomes, strict=True):
            rows.append(
                (
                    route.model,
                    route.tenant.slug if route.tenant else "shared",
                    route.provider.name,
                    route.upstream_model,
                    status,
                    f"{latency_ms:.0f} ms",
                )
            )
            if status != "200":
                failures.append(f"route {route.id} ({route.model} -> {route.provider.name}): {error}")
        for line in table(rows):
            self.stdout.write(line)
        if failures:
            for line in failures:
                self.stdout.write(line)
            raise CommandError(f"{len(failures)} of {len(routes)} routes failed")
        self.stdout.write(f"all {len(routes)} routes answered")
