"""docker-compose.yml scales the proxy (`--scale proxy=N`) behind HAProxy, with a configuration it accepts."""

import re
import subprocess

import yaml

from tests import servers
from tests.fleet_support import haproxy_installed

COMPOSE = yaml.safe_load((servers.ROOT / "docker-compose.yml").read_text())["services"]
LB_CONFIG = servers.ROOT / "deploy" / "haproxy" / "compose.cfg"


def test_haproxy_accepts_the_load_balancers_configuration():
    haproxy_installed()
    checked = subprocess.run(["haproxy", "-c", "-f", str(LB_CONFIG)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_proxy_publishes_no_host_port_so_that_it_can_be_scaled():
    assert "ports" not in COMPOSE["proxy"]
    assert COMPOSE["proxy"]["expose"] == ["8000"]


def test_the_load_balancer_publishes_the_one_address_and_uses_the_projects_configuration():
    lb = COMPOSE["lb"]
    assert lb["ports"] == ["8000:8000"]
    [mount] = lb["volumes"]
    source, target, _ = mount.split(":")
    assert (servers.ROOT / source).resolve() == LB_CONFIG
    assert target == "/usr/local/etc/haproxy/haproxy.cfg"
    assert re.search(r"^\s*bind :8000$", LB_CONFIG.read_text(), re.M)


def test_the_load_balancer_finds_every_proxy_container_on_the_port_daphne_listens_on():
    command = COMPOSE["proxy"]["command"]
    template = re.search(r"^\s*server-template \S+ 1-(\d+) (\S+):(\d+)", LB_CONFIG.read_text(), re.M)
    assert template, "no server-template line"
    assert template.group(2) == "proxy"  # the service name, resolved by Docker's DNS
    assert template.group(3) == command[command.index("-p") + 1]
    assert int(template.group(1)) >= 8


def test_the_health_check_sends_a_host_that_the_proxy_allows():
    host = re.search(r"hdr Host (\S+)", LB_CONFIG.read_text()).group(1)
    assert host in COMPOSE["proxy"]["environment"]["ALLOWED_HOSTS"].split(",")
