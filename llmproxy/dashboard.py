"""The usage dashboard in the admin: requests, tokens, cost, errors and latency by day, model and key.

/admin/usage/          a platform admin: every tenant together, and each tenant's share;
                       a tenant admin: redirected to their own tenant's page
/admin/usage/<slug>/   one tenant; a tenant admin of another tenant gets 404, like any outsider

Both take ?start=YYYY-MM-DD&end=YYYY-MM-DD (UTC days, both included; default the last
DEFAULT_DAYS days). Numbers come from llmproxy.usage_report; charts are inline SVG drawn
by llmproxy.svg_charts, so the page needs no script and no network.
"""

from datetime import UTC, date, datetime, timedelta

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from llmproxy.admin_scoping import can_use_admin, is_platform_admin, managed_tenant_id
from llmproxy.svg_charts import Series, bar_chart, column_chart, line_chart
from llmproxy.usage_report import usage_report
from tenants.models import Tenant

DEFAULT_DAYS = 14
MAX_DAYS = 366

BLUE, LIGHT_BLUE, GREEN, RED, AMBER = "#417690", "#79aec8", "#5b8c5a", "#ba2121", "#d4a017"


class RangeForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        today = datetime.now(UTC).date()
        end = data.get("end") or today
        start = data.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError("The start must not be after the end.")
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError(f"Pick at most {MAX_DAYS} days.")
        data["start"], data["end"] = start, end
        return data


def default_range() -> tuple[date, date]:
    end = datetime.now(UTC).date()
    return end - timedelta(days=DEFAULT_DAYS - 1), end


def usage_index(request):
    if not can_use_admin(request.user):
        raise PermissionDenied
    query = request.GET.copy()
    slug = query.pop("tenant", [""])[-1]
    if not is_platform_admin(request.user):
        # A tenant admin has one tenant: theirs, whatever ?tenant= says.
        slug = get_object_or_404(Tenant, pk=managed_tenant_id(request.user)).slug
    if slug:
        url = reverse("usage-dashboard-tenant", args=[slug])
        return redirect(f"{url}?{query.urlencode()}" if query else url)
    return _render(request, tenant=None)


def usage_tenant(request, slug):
    if not can_use_admin(request.user):
        raise PermissionDenied
    tenant = Tenant.objects.filter(slug=slug).first()
    # Another tenant's page does not exist for a tenant admin: 404, not 403, so slugs do not leak.
    if tenant is None or not (
        is_platform_admin(request.user) or managed_tenant_id(request.user) == tenant.id
    ):
        raise Http404("No such tenant.")
    return _render(request, tenant=tenant)


def _render(request, tenant):
    params = request.GET.copy()
    params.pop("tenant", None)
    form = RangeForm(params or None)
    if form.is_bound and form.is_valid():
        start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    else:
        start, end = default_range()
        if not form.is_bound:
            form = RangeForm(initial={"start": start, "end": end})
    report = usage_report(
        tenant_ids=None if tenant is None else [tenant.id], start=start, end=end, per_tenant=tenant is None
    )
    if tenant is None:
        query = f"?start={start.isoformat()}&end={end.isoformat()}"
        for row in report.tenants:
            if not row.label.startswith("("):
                row.link = reverse("usage-dashboard-tenant", args=[row.label]) + query
    context = {
        **admin.site.each_context(request),
        "title": f"Usage of {tenant.name or tenant.slug}" if tenant else "Usage of all tenants",
        "tenant": tenant,
        "tenants": Tenant.objects.order_by("slug") if is_platform_admin(request.user) else (),
        "form": form,
        "report": report,
        "day_charts": _day_charts(report),
        "model_charts": _group_charts("model", "per model", report.models, latency=True),
        "key_charts": _group_charts("key", "per API key", report.keys),
        "tenant_charts": _group_charts("tenant", "per tenant", report.tenants) if tenant is None else (),
    }
    return TemplateResponse(request, "admin/dashboard/usage.html", context)


def _day_charts(report):
    days = [row.label for row in report.days]
    usage = [row.usage for row in report.days]

    def month_day(label):
        return label[5:]

    return [
        column_chart(
            "requests-per-day",
            "Requests per day",
            days,
            [Series("requests", [u.requests for u in usage], BLUE)],
            short=month_day,
        ),
        column_chart(
            "tokens-per-day",
            "Tokens per day",
            days,
            [
                Series("input", [u.input_tokens for u in usage], LIGHT_BLUE),
                Series("output", [u.output_tokens for u in usage], BLUE),
            ],
            short=month_day,
        ),
        column_chart(
            "cost-per-day",
            "Cost per day (USD)",
            days,
            [Series("cost", [u.cost for u in usage], GREEN)],
            unit="$",
            short=month_day,
        ),
        column_chart(
            "errors-per-day",
            "Errors per day",
            days,
            [Series("errors", [u.errors for u in usage], RED)],
            short=month_day,
        ),
        line_chart(
            "latency-per-day",
            "Latency per day (answered requests)",
            days,
            [
                Series("p50", [row.latency.p50 for row in report.days], BLUE),
                Series("p95", [row.latency.p95 for row in report.days], AMBER),
            ],
            unit="ms",
            short=month_day,
        ),
    ]


def _group_charts(name, heading, rows, latency=False):
    labels = [row.label for row in rows]
    usage = [row.usage for row in rows]
    charts = [
        bar_chart(
            f"requests-per-{name}",
            f"Requests {heading}",
            labels,
            [Series("requests", [u.requests for u in usage], BLUE)],
        ),
        bar_chart(
            f"tokens-per-{name}",
            f"Tokens {heading}",
            labels,
            [
                Series("input", [u.input_tokens for u in usage], LIGHT_BLUE),
                Series("output", [u.output_tokens for u in usage], BLUE),
            ],
        ),
        bar_chart(
            f"cost-per-{name}",
            f"Cost {heading} (USD)",
            labels,
            [Series("cost", [u.cost for u in usage], GREEN)],
            unit="$",
        ),
        bar_chart(
            f"errors-per-{name}",
            f"Errors {heading}",
            labels,
            [Series("errors", [u.errors for u in usage], RED)],
        ),
    ]
    if latency:
        charts.append(
            bar_chart(
                f"latency-per-{name}",
                f"Latency {heading} (answered requests)",
                labels,
                [
                    Series("p50", [row.latency.p50 for row in rows], BLUE),
                    Series("p95", [row.latency.p95 for row in rows], AMBER),
                ],
                unit="ms",
                stacked=False,
            )
        )
    return charts
