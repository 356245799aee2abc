"""A real three-node Redis Cluster on 127.0.0.1, from Debian's redis-server, for the cluster tests.

The tests start their own (whatever REDIS_URL says) so they run in every test run; it
keeps nothing on disk but its nodes.conf files, in a temporary folder removed at the end.
"""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"


def _free_ports(count):
    # Held open together so that no two come out the same.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class RedisCluster:
    def __init__(self, nodes=3):
        self.dir = Path(tempfile.mkdtemp(prefix="llmproxy-cluster-"))
        ports = _free_ports(2 * nodes)
        self.ports, bus_ports = ports[:nodes], ports[nodes:]
        self.processes = []
        try:
            for port, bus_port in zip(self.ports, bus_ports, strict=True):
                self.processes.append(self._start_node(port, bus_port))
            for port in self.ports:
                self._wait(lambda p=port: self.node(p).ping(), f"node {port} did not start")
            subprocess.run(
                [
                    REDIS_CLI,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self._wait(self._converged, "the cluster did not reach cluster_state:ok")
        except BaseException:
            self.stop()
            raise

    def _start_node(self, port, bus_port):
        return subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(port),
                "--cluster-port",
                str(bus_port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "2000",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _converged(self):
        for port in self.ports:
            info = self.node(port).cluster("info")
            if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != len(self.ports):
                return False
        return True

    def _wait(self, check, message, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except redis.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(message)

    @property
    def url(self):
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def node(self, port):
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True)

    def client(self):
        return redis.RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports], decode_responses=True
        )

    def port_of(self, key):
        """The port of the node that serves KEY's slot."""
        client = self.client()
        try:
            return client.get_node_from_key(key).port
        finally:
            client.close()

    def keys(self, pattern):
        """{port: sorted keys matching PATTERN held by that node}."""
        return {p: sorted(self.node(p).keys(pattern)) for p in self.ports}

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_cluster():
    cluster = RedisCluster()
    yield cluster
    cluster.stop()
