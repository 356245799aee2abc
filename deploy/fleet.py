#!/usr/bin/env python3
"""N Daphne processes of the proxy behind one address (HAProxy), with rolling restarts.

    fleet.py serve --workers 4 --bind 127.0.0.1:8000   # runs until SIGTERM or Ctrl-C
    fleet.py restart                                   # rolling restart; returns when done
    fleet.py stop                                      # graceful stop

Daphne serves one process per port and, on SIGTERM, cancels the requests it is still
answering. So a process is never stopped while it serves. A restart starts the new
processes first, each on a fresh port, and once one answers it swaps it in: HAProxy
sends new requests to the new process and none to the old one (put in maintenance),
which finishes what it serves and is then stopped with SIGTERM (the gateway writes its
buffered usage records at exit). HAProxy has twice as many server slots as processes,
so an old and a new process can both be in it: the fleet never serves with fewer. A
process that dies on its own is replaced the same way; meanwhile HAProxy retries the
connections it refuses on the others.

SIGHUP to the `serve` process also restarts; SIGTERM or SIGINT stops gracefully (HAProxy
stops accepting, finishes what it has, then the processes stop). The processes and
HAProxy get SIGTERM if this supervisor dies.
"""

import argparse
import contextlib
import csv
import ctypes
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "haproxy" / "fleet.cfg"
BACKEND = "daphne"


def log(message):
    print(f"{time.strftime('%H:%M:%S')} fleet: {message}", flush=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # Own session: a Ctrl-C in the terminal reaches only the supervisor, which stops the rest in order.
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class HAProxy:
    def __init__(self, run_dir, bind, workers, log_dir):
        self.socket_path = run_dir / "haproxy.sock"
        self.slots = [f"s{i + 1}" for i in range(2 * len(workers))]
        lines = []
        for slot in self.slots:
            worker = next((w for w in workers if w.slot == slot), None)
            # A free slot waits in maintenance ("disabled") until a process is swapped into it.
            address = f"127.0.0.1:{worker.port}" if worker else "127.0.0.1:1 disabled"
            lines.append(f"    server {slot} {address}")
        config = run_dir / "haproxy.cfg"
        config.write_text(
            string.Template(TEMPLATE.read_text()).substitute(
                socket=self.socket_path, bind=bind, servers="\n".join(lines) + "\n"
            )
        )
        subprocess.run(["haproxy", "-c", "-q", "-f", str(config)], check=True)
        output = open(log_dir / "haproxy.log", "ab") if log_dir else None  # noqa: SIM115 - as long as haproxy
        self.process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 10
        while not self.socket_path.exists() or not self._try("show info"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("fleet: haproxy did not start (see its output)")
            time.sleep(0.05)

    def _try(self, command):
        with contextlib.suppress(OSError):
            return self.command(command)
        return ""

    def command(self, command):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(command.encode() + b"\n")
            return b"".join(iter(lambda: s.recv(65536), b"")).decode()

    def slot_stats(self):
        """{slot: its row of `show stat`}."""
        rows = csv.DictReader(self.command("show stat").lstrip("# ").splitlines())
        return {r["svname"]: r for r in rows if r["pxname"] == BACKEND and r["svname"] in self.slots}

    def swap_in(self, worker, free_slot, old_slot):
        """New requests go to WORKER (in FREE_SLOT), none to OLD_SLOT's process any more."""
        self.command(f"set server {BACKEND}/{free_slot} addr 127.0.0.1 port {worker.port}")
        self.command(f"set server {BACKEND}/{free_slot} state ready")
        self.command(f"set server {BACKEND}/{old_slot} state maint")


class Worker:
    def __init__(self, args, slot):
        self.args = args
        self.slot = slot
        self.port = _free_port()
        self.process = None

    def start(self):
        command = [
            str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(self.port),
            "--proxy-headers", self.args.application,
        ]  # fmt: skip
        output = open(self.args.log_dir / f"{self.port}.log", "ab") if self.args.log_dir else None  # noqa: SIM115
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        if output:
            output.close()  # the child has its own copy
        return self

    def wait_ready(self):
        deadline = time.monotonic() + self.args.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return True
            except urllib.error.HTTPError:
                return True  # it answers (a 400 is ALLOWED_HOSTS refusing 127.0.0.1): it serves
            except OSError:
                time.sleep(0.1)
        self.terminate()
        self.wait()
        return False

    def alive(self):
        return self.process.poll() is None

    def terminate(self):
        if self.alive():
            self.process.terminate()

    def wait(self, timeout=30):
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"pid {self.process.pid} did not stop in {timeout}s: killed")
            self.process.kill()
            self.process.wait()


class Fleet:
    def __init__(self, args):
        self.args = args
        self.run_dir = args.run_dir
        self.workers = [Worker(args, f"s{i + 1}") for i in range(args.workers)]
        self.generation = 0
        self.restart_failures = 0
        self.restart_wanted = False
        self.stopping = False
        self.state = "starting"
        self.haproxy = None

    def serve(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "fleet.pid").write_text(str(os.getpid()))
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "restart_wanted", True))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # The processes add up their metrics through this directory, emptied before they start,
            # so /metrics counts the whole fleet whichever process answers it.
            metrics = self.run_dir / "metrics"
            shutil.rmtree(metrics, ignore_errors=True)
            metrics.mkdir()
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        try:
            for worker in self.workers:  # all at once: each takes seconds to import Django
                worker.start()
            if not all(worker.wait_ready() for worker in self.workers):
                raise SystemExit("fleet: a Daphne process did not start (see its output)")
            self.haproxy = HAProxy(self.run_dir, self.args.bind, self.workers, self.args.log_dir)
            self._save("serving")
            ports = ", ".join(str(w.port) for w in self.workers)
            log(f"serving on http://{self.args.bind} (Daphne on ports {ports})")
            self._supervise()
        finally:
            self._stop_all()

    def _supervise(self):
        while not self.stopping:
            if self.restart_wanted:
                self.restart_wanted = False
                self._replace(list(self.workers))
            dead = [w for w in self.workers if not w.alive()]
            if dead and not self.stopping:
                log(f"pid {', '.join(str(w.process.pid) for w in dead)} exited: starting new processes")
                self._replace(dead, restart=False)
            if self.haproxy.process.poll() is not None:
                raise SystemExit("fleet: haproxy exited; stopping")
            time.sleep(0.2)

    def _replace(self, old_workers, restart=True):
        if restart:
            self._save("restarting")
            log("rolling restart")
        used = {w.slot for w in self.workers}
        free = [slot for slot in self.haproxy.slots if slot not in used]
        fresh = [Worker(self.args, free.pop(0)).start() for _ in old_workers]
        retired, failures = [], 0
        for old, new in zip(old_workers, fresh, strict=True):
            if not new.wait_ready():
                log(f"a new process did not start (see its output): pid {old.process.pid} stays")
                failures += 1
                continue
            self.haproxy.swap_in(new, new.slot, old.slot)
            self.workers[self.workers.index(old)] = new
            retired.append(old)
            log(f"pid {new.process.pid} serves instead of pid {old.process.pid}")
        self._retire(retired)
        if restart:
            self.generation += 1
            self.restart_failures = failures
            self._save("serving")
            missed = f"; {failures} could not be replaced" if failures else ""
            log(f"rolling restart done (generation {self.generation}){missed}")
        else:
            self._save(self.state)
            if failures:
                time.sleep(2)  # before the next try: a process that cannot start must not spin

    def _retire(self, workers):
        # In maintenance a process gets no new request; the ones it is answering count in scur.
        deadline = time.monotonic() + self.args.drain_timeout
        waiting = {w.slot: w for w in workers}
        while waiting and time.monotonic() < deadline:
            stats = self.haproxy.slot_stats()
            for slot in [s for s in waiting if stats[s]["scur"] == "0" or not waiting[s].alive()]:
                waiting.pop(slot).terminate()
            time.sleep(0.05)
        for worker in waiting.values():
            log(f"pid {worker.process.pid} still serves after {self.args.drain_timeout}s: stopped anyway")
            worker.terminate()
        for worker in workers:
            worker.wait()

    def _stop_all(self):
        self.stopping = True
        if self.haproxy is not None and self.haproxy.process.poll() is None:
            # Soft stop: stop listening, finish the requests in progress, exit.
            self.haproxy.process.send_signal(signal.SIGUSR1)
            try:
                self.haproxy.process.wait(self.args.drain_timeout)
            except subprocess.TimeoutExpired:
                self.haproxy.process.kill()
        for worker in self.workers:
            if worker.process is not None:
                worker.terminate()
        for worker in self.workers:
            if worker.process is not None:
                worker.wait()
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / "fleet.pid").unlink()
        log("stopped")
        self._save("stopped")

    def _save(self, state):
        self.state = state
        document = {
            "status": state,
            "generation": self.generation,
            "restart_failures": self.restart_failures,
            "bind": self.args.bind,
            "workers": [
                {"slot": w.slot, "port": w.port, "pid": w.process.pid if w.process else None}
                for w in self.workers
            ],
        }
        path = self.run_dir / "state.json"
        path.with_suffix(".tmp").write_text(json.dumps(document, indent=2))
        path.with_suffix(".tmp").replace(path)


def _state(run_dir):
    with contextlib.suppress(FileNotFoundError, ValueError):
        return json.loads((run_dir / "state.json").read_text())
    return {}


def _signal_fleet(run_dir, sig):
    try:
        pid = int((run_dir / "fleet.pid").read_text())
        os.kill(pid, sig)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        raise SystemExit(f"fleet: no fleet is running from {run_dir}") from None
    return pid


def restart(args):
    before = _state(args.run_dir).get("generation", 0)
    _signal_fleet(args.run_dir, signal.SIGHUP)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        state = _state(args.run_dir)
        if state.get("generation", 0) > before and state.get("status") == "serving":
            if state["restart_failures"]:
                raise SystemExit(f"fleet: {state['restart_failures']} processes could not be replaced")
            print(f"restarted: pids {', '.join(str(w['pid']) for w in state['workers'])}")
            return
        time.sleep(0.2)
    raise SystemExit(f"fleet: the restart did not finish within {args.timeout}s")


def stop(args):
    pid = _signal_fleet(args.run_dir, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        # Its last act is to say so (a parent that has not reaped it still sees its pid).
        if _state(args.run_dir).get("status") == "stopped":
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise SystemExit(f"fleet: pid {pid} did not stop within {args.timeout}s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=Path(os.environ.get("LLMPROXY_VAR_DIR") or ROOT / "var") / "fleet",
        help="where the HAProxy config, its admin socket, the pid and state files go (default: var/fleet)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the fleet and supervise it")
    serve.add_argument("--workers", type=int, default=2, help="Daphne processes (default 2)")
    serve.add_argument("--bind", default="127.0.0.1:8000", help="the one listening address (HOST:PORT)")
    serve.add_argument("--application", default="llmproxy.asgi:application")
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="seconds a process may take to finish its requests before it is stopped anyway",
    )
    serve.add_argument("--start-timeout", type=float, default=60.0)
    serve.add_argument("--log-dir", type=Path, help="one log file per process instead of this terminal")
    for name in ("restart", "stop"):
        command = commands.add_parser(name, help=f"{name} the running fleet")
        command.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        if args.workers < 1:
            parser.error("--workers must be at least 1")
        if args.log_dir:
            args.log_dir.mkdir(parents=True, exist_ok=True)
        Fleet(args).serve()
    elif args.command == "restart":
        restart(args)
    else:
        stop(args)


if __name__ == "__main__":
    main()
