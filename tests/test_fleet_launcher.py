"""deploy/fleet.py's commands refuse what cannot work, with one clear line."""

import subprocess
import sys

from tests.fleet_support import FLEET


def fleet(*args, run_dir):
    return subprocess.run(
        [sys.executable, str(FLEET), "--run-dir", str(run_dir), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_restart_without_a_running_fleet_says_so(tmp_path):
    done = fleet("restart", run_dir=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip() == f"fleet: no fleet is running from {tmp_path}"


def test_stop_without_a_running_fleet_says_so(tmp_path):
    done = fleet("stop", run_dir=tmp_path)
    assert done.returncode != 0
    assert "no fleet is running" in done.stderr


def test_a_fleet_needs_at_least_one_process(tmp_path):
    done = fleet("serve", "--workers", "0", run_dir=tmp_path)
    assert done.returncode == 2
    assert "--workers must be at least 1" in done.stderr
    assert not (tmp_path / "fleet.pid").exists()
