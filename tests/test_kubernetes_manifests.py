"""deploy/kubernetes: valid against Kubernetes' schemas, and its parts fit together and fit the settings."""

import json
import re
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from tests import servers

DEPLOY = servers.ROOT / "deploy" / "kubernetes"
SETTINGS_SOURCE = (servers.ROOT / "llmproxy" / "settings.py").read_text()
# The oldest Kubernetes release still maintained when this was written, and the newest with schemas here.
VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]


def manifests():
    found = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") != "Kustomization":
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


ALL = manifests()
DEPLOYMENT = ALL["Deployment", "llmproxy"]
POD = DEPLOYMENT["spec"]["template"]
PROXY = next(c for c in POD["spec"]["containers"] if c["name"] == "proxy")
JOB = ALL["Job", "llmproxy-migrate"]
CONFIG = ALL["ConfigMap", "llmproxy-config"]["data"]
SECRET = ALL["Secret", "llmproxy-secrets"]["stringData"]


def containers(pod_spec):
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def selects(selector, labels):
    return selector.items() <= labels.items()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("key", list(ALL), ids="/".join)
def test_every_manifest_is_valid_against_the_kubernetes_schema(key, version):
    kubernetes_validate.validate(ALL[key], version, strict=True)  # raises, naming the field


def test_the_kustomization_applies_every_manifest_but_the_example_secret():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    manifests_here = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests_here - {"secret.example.yaml"}
    [migrate] = JOB["spec"]["template"]["spec"]["containers"]
    assert {image["name"] for image in kustomization["images"]} == {PROXY["image"], migrate["image"]}


def test_the_deployment_service_and_disruption_budget_select_the_proxy_pods():
    labels = POD["metadata"]["labels"]
    assert selects(DEPLOYMENT["spec"]["selector"]["matchLabels"], labels)
    assert selects(ALL["Service", "llmproxy"]["spec"]["selector"], labels)
    assert selects(ALL["PodDisruptionBudget", "llmproxy"]["spec"]["selector"]["matchLabels"], labels)
    assert not selects(
        DEPLOYMENT["spec"]["selector"]["matchLabels"], JOB["spec"]["template"]["metadata"]["labels"]
    )


def test_the_service_sends_traffic_to_the_port_daphne_listens_on():
    [port] = PROXY["ports"]
    assert ALL["Service", "llmproxy"]["spec"]["ports"][0]["targetPort"] == port["name"]
    command = PROXY["command"]
    assert command[command.index("-p") + 1] == str(port["containerPort"])


def test_liveness_asks_healthz_and_readiness_asks_readyz_with_a_host_django_allows():
    port_names = {port["name"] for port in PROXY["ports"]}
    probes = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
    for probe, path in probes.items():
        get = PROXY[probe]["httpGet"]
        assert (get["path"], get["port"] in port_names) == (path, True), probe
        host = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}.get("Host")
        assert host in CONFIG["ALLOWED_HOSTS"].split(","), f"{probe}: Django answers 400 to Host {host!r}"


@pytest.mark.parametrize("workload", ["Deployment", "Job"])
def test_every_container_requests_cpu_and_memory(workload):
    pod_spec = (DEPLOYMENT if workload == "Deployment" else JOB)["spec"]["template"]["spec"]
    for container in containers(pod_spec):
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), container["name"]


def test_the_autoscaler_scales_the_deployment_on_the_cpu_it_requests():
    hpa = ALL["HorizontalPodAutoscaler", "llmproxy"]["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "llmproxy")
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert "cpu" in PROXY["resources"]["requests"]
    # With one pod allowed down at a time, the smallest fleet still serves during a node drain.
    assert hpa["minReplicas"] > ALL["PodDisruptionBudget", "llmproxy"]["spec"]["maxUnavailable"]


def test_a_rolling_update_keeps_every_pod_until_its_successor_is_ready():
    assert DEPLOYMENT["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pre_stop = PROXY["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert POD["spec"]["terminationGracePeriodSeconds"] > int(pre_stop[1])


def test_the_migration_job_migrates_and_new_pods_wait_for_it_with_the_same_image():
    [migrate] = JOB["spec"]["template"]["spec"]["containers"]
    assert migrate["command"][-3:] == ["manage.py", "migrate", "--noinput"]
    assert JOB["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    [wait] = POD["spec"]["initContainers"]
    assert "manage.py migrate --check" in " ".join(wait["command"])
    assert migrate["image"] == wait["image"] == PROXY["image"]


def test_every_secret_config_map_and_account_referenced_is_defined():
    for workload in (DEPLOYMENT, JOB):
        pod_spec = workload["spec"]["template"]["spec"]
        assert ("ServiceAccount", pod_spec["serviceAccountName"]) in ALL
        for container in containers(pod_spec):
            for source in container.get("envFrom", []):
                kind, name = ("Secret", source["secretRef"]["name"]) if "secretRef" in source else (
                    "ConfigMap", source["configMapRef"]["name"])  # fmt: skip
                assert (kind, name) in ALL, f"{container['name']}: {kind} {name} is not defined"
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in ALL["Secret", ref["name"]]["stringData"]


def test_every_container_reads_its_settings_and_secrets_from_the_config_map_and_the_secret():
    for workload in (DEPLOYMENT, JOB):
        for container in containers(workload["spec"]["template"]["spec"]):
            sources = {next(iter(source.values()))["name"] for source in container["envFrom"]}
            assert sources == {"llmproxy-config", "llmproxy-secrets"}, container["name"]


def test_the_secret_holds_what_the_proxy_cannot_start_without():
    assert {"SECRET_KEY", "LLMPROXY_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL"} <= SECRET.keys()
    assert not SECRET.keys() & CONFIG.keys()


def test_every_variable_given_is_one_the_settings_read():
    for name in {*CONFIG, *SECRET}:
        assert re.search(rf'"{name}"', SETTINGS_SOURCE), f"{name} is not read by llmproxy/settings.py"


def test_the_settings_accept_the_config_map_and_the_example_secret():
    env = {**CONFIG, **SECRET, "SECRET_KEY": "k8s-example", "DATABASE_URL": "postgres://u@db:5432/llmproxy"}
    done = subprocess.run(
        [sys.executable, "-c", "import django, json; django.setup(); from django.conf import settings as s; "
         "print(json.dumps([s.CACHES['default']['OPTIONS'].get('CLIENT_CLASS'), "
         "s.DATABASES['default']['OPTIONS']['pool']['max_size']]))"],
        cwd=servers.ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "llmproxy.settings", **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cluster_cache = "llmproxy.redis_client.ClusterCacheClient"  # the example's REDIS_URL is a cluster
    assert json.loads(done.stdout) == [cluster_cache, int(CONFIG["DATABASE_POOL_MAX"])]
