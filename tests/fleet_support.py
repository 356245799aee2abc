"""The fleet of deploy/fleet.py for the tests: N Daphne processes behind HAProxy on one address."""

import csv
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from audit.models import RequestLog
from tests import servers
from tests.conftest import ARTIFACTS

FLEET = servers.ROOT / "deploy" / "fleet.py"


def haproxy_installed():
    if shutil.which("haproxy") is None:
        raise RuntimeError("haproxy is not installed: run `make loadbalancer` (Debian's haproxy package)")


class Fleet:
    def __init__(self, name, workers=3, **env):
        haproxy_installed()
        # A short path: the admin socket's path must fit in a unix socket address.
        self.run_dir = Path(tempfile.mkdtemp(prefix="lpfleet-"))
        port = servers.free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable, str(FLEET), "--run-dir", str(self.run_dir), "serve", "--workers", str(workers),
            "--bind", f"127.0.0.1:{port}", "--log-dir", str(ARTIFACTS / "logs" / name),
            "--drain-timeout", "30",
        ]  # fmt: skip
        self.log_path = ARTIFACTS / "logs" / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, env=servers.proxy_env(**env), cwd=servers.ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        # Three Daphne processes importing Django at once take a while on a busy machine.
        self._wait_for(
            lambda: self.state().get("status") == "serving", "the fleet did not start", timeout=120
        )

    def _wait_for(self, check, message, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{message}:\n{self.log()}")

    def log(self):
        return self.log_path.read_text(errors="replace")[-5000:]

    def state(self):
        try:
            return json.loads((self.run_dir / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def pids(self):
        return [worker["pid"] for worker in self.state()["workers"]]

    def served(self):
        """{HAProxy slot of each current process: requests HAProxy sent to that slot so far}."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.run_dir / "haproxy.sock"))
            s.sendall(b"show stat\n")
            data = b"".join(iter(lambda: s.recv(65536), b""))
        rows = csv.DictReader(data.decode().lstrip("# ").splitlines())
        slots = {worker["slot"] for worker in self.state()["workers"]}
        return {r["svname"]: int(r["stot"]) for r in rows if r["pxname"] == "daphne" and r["svname"] in slots}

    def fleet_command(self, *args, timeout=120):
        return subprocess.run(
            [sys.executable, str(FLEET), "--run-dir", str(self.run_dir), *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def stop(self):
        """Graceful (SIGTERM); whatever is left after a minute is killed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def usage_written(model, quiet=0.5, timeout=20.0):
    """The RequestLog rows of MODEL once the fleet has stopped writing them.

    A test must not end while a process still writes usage: the next test's database
    flush (TRUNCATE) and that write would deadlock.
    """
    count, since = -1, time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        now = RequestLog.objects.filter(model=model).count()
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return count
        time.sleep(0.05)
    raise AssertionError(f"usage rows of {model} still growing after {timeout}s")


class Load:
    """Threads sending requests through the fleet until stopped; every outcome is kept."""

    def __init__(self, send, threads=6):
        self.send = send
        self.outcomes = Counter()
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self, i):
        with httpx.Client(timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                with self._lock:
                    self.sent += 1
                try:
                    outcome = self.send(client, i, n)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with self._lock:
                    self.outcomes[outcome] += 1
                n += 1

    def wait_for(self, count, timeout=30.0):
        deadline = time.monotonic() + timeout
        while self.sent < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return self.outcomes
