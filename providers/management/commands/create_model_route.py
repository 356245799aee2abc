import re

from django.core.management.base import CommandError

from llmproxy.management import ProxyCommand, positive_decimal_argument, whole_number_argument
from providers.services import model_route_create, provider_for_route


def price_argument(text):
    # ModelRoute prices are DECIMAL(12, 6).
    price = positive_decimal_argument(text)
    if -price.normalize().as_tuple().exponent > 6 or price >= 10**6:
        raise CommandError(f"price {text!r} must be below 1000000 with at most 6 decimal places")
    return price


def model_name_argument(text):
    if not re.fullmatch(r"\S{1,200}", text):
        raise CommandError(f"model name {text!r} must be 1 to 200 characters without spaces")
    return text


class Command(ProxyCommand):
    help = (
        "Route a public model name to a provider's upstream model. Routes of a model are tried by "
        "priority (lower first); equal priorities share traffic by weight. With --tenant the provider "
        "is looked up in the tenant's own providers, then the shared ones; a shared route needs a "
        "shared provider."
    )

    def add_arguments(self, parser):
        parser.add_argument("model", type=model_name_argument, help="Public model name clients ask for.")
        parser.add_argument("--provider", required=True, metavar="NAME")
        parser.add_argument("--upstream-model", type=model_name_argument, required=True, metavar="NAME")
        parser.add_argument(
            "--priority", type=whole_number_argument(), default=0, metavar="N", help="Lower is tried first."
        )
        parser.add_argument(
            "--weight",
            type=whole_number_argument(minimum=1),
            default=1,
            metavar="N",
            help="Share of traffic among routes of equal priority (at least 1).",
        )
        parser.add_argument(
            "--input-price",
            type=price_argument,
            metavar="USD_PER_MTOK",
            help="USD per million input tokens.",
        )
        parser.add_argument(
            "--output-price",
            type=price_argument,
            metavar="USD_PER_MTOK",
            help="USD per million output tokens.",
        )
        self.add_tenant_argument(parser, help_text="Slug of the tenant owning the route; omit to share it.")

    def handle(
        self,
        *args,
        model,
        provider,
        upstream_model,
        priority,
        weight,
        input_price,
        output_price,
        tenant,
        **options,
    ):
        tenant = self.get_tenant(tenant)
        provider = provider_for_route(name=provider, tenant=tenant)
        route = model_route_create(
            model=model,
            provider=provider,
            upstream_model=upstream_model,
            priority=priority,
            weight=weight,
            input_price=input_price,
            output_price=output_price,
            tenant=tenant,
            actor=self.audit_actor,
        )
        scope = f"for tenant {tenant.slug}" if tenant else "shared"
        self.stdout.write(f"created route {route} ({scope}, priority {priority}, weight {weight})")
