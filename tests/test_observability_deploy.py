"""docker-compose's collector, Jaeger, Prometheus and Grafana fit together and chart what /metrics has."""

import json
import re

import pytest
import yaml
from prometheus_client import REGISTRY

from llmproxy import metrics
from tests.servers import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
DEPLOY = ROOT / "deploy" / "observability"
DASHBOARD = json.loads((DEPLOY / "grafana" / "dashboards" / "llmproxy.json").read_text())


def mounts(service):
    """{path in the container: file of the repository} of a service's bind mounts."""
    found = {}
    for volume in COMPOSE[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def exposed_names():
    """Every sample name GET /metrics can show."""
    names = {"llmproxy_circuit_state"}
    for family in REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
    return names


def expressions():
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


@pytest.mark.parametrize("service", ["otel-collector", "jaeger", "prometheus", "grafana"])
def test_each_observability_service_is_in_the_compose_file_with_the_projects_configuration(service):
    assert service in COMPOSE
    for path in mounts(service).values():
        assert path.exists(), path
    for port in COMPOSE[service].get("ports", []):
        assert port.startswith("127.0.0.1:"), "UIs without a login are for this host only"


def test_the_collector_receives_otlp_over_http_and_sends_the_traces_to_jaeger():
    [(target, source)] = mounts("otel-collector").items()
    assert f"--config={target}" in COMPOSE["otel-collector"]["command"]
    config = yaml.safe_load(source.read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    [exporter] = config["service"]["pipelines"]["traces"]["exporters"]
    host, port = config["exporters"][exporter]["endpoint"].split(":")
    assert host in COMPOSE and COMPOSE[host]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert port == "4317"


def test_prometheus_scrapes_every_proxy_container_where_daphne_listens():
    config = yaml.safe_load(mounts("prometheus")["/etc/prometheus/prometheus.yml"].read_text())
    [job] = config["scrape_configs"]
    [discovery] = job["dns_sd_configs"]
    command = COMPOSE["proxy"]["command"]
    assert job["metrics_path"] == "/metrics"
    assert discovery["names"] == ["proxy"] and discovery["type"] == "A"
    assert str(discovery["port"]) == command[command.index("-p") + 1]


def test_grafana_is_provisioned_with_the_prometheus_data_source_and_the_dashboard():
    grafana = mounts("grafana")
    [source] = yaml.safe_load(
        (grafana["/etc/grafana/provisioning"] / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    [provider] = yaml.safe_load(
        (grafana["/etc/grafana/provisioning"] / "dashboards" / "llmproxy.yml").read_text()
    )["providers"]
    assert source["url"] == "http://prometheus:9090"
    assert grafana[provider["options"]["path"]] == DEPLOY / "grafana" / "dashboards"
    used = {p["datasource"]["uid"] for p in DASHBOARD["panels"] if "datasource" in p}
    assert used == {source["uid"]}


def test_every_metric_the_dashboard_charts_is_one_the_proxy_exposes():
    exposed = exposed_names()
    for title, expr in expressions():
        for name in re.findall(r"\bllmproxy_[a-z_]+", expr):
            assert name in exposed, f"{title}: {name}"
    for variable in DASHBOARD["templating"]["list"]:
        assert re.search(r"label_values\((llmproxy_[a-z_]+),", variable["query"]["query"]).group(1) in exposed


def test_every_metric_of_the_gateway_has_a_panel():
    charted = " ".join(expr for _, expr in expressions())
    defined = [m._name for m in vars(metrics).values() if hasattr(m, "_name") and hasattr(m, "_type")]
    assert len(defined) >= 14
    for name in [*defined, "llmproxy_circuit_state"]:
        assert name in charted, name
