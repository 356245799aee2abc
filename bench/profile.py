"""Where a proxy's CPU goes under load: py-spy samples, summed by package and by function.

    .venv/bin/python -m bench.profile RAW_FILE      (summarise a `py-spy record -f raw` file)

bench.run --profile samples each of our servers for one wrk run at concurrency
32 and puts this summary in the results. py-spy pauses the process for each
sample, so the profiled run's throughput is not quoted anywhere.
"""

import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import measure

PROJECT = {"llmproxy", "keys", "providers", "quotas", "audit", "tenants"}
# Stacks that end here are a thread waiting for work, not CPU (py-spy does not always see them as idle).
IDLE_LEAVES = ("_worker (concurrent/futures/thread.py", "wait (threading.py", "select (selectors.py")


def sample(pid: int, url: str, key: str, args) -> tuple[str, int]:
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        return "py-spy is not installed in .venv (`pip install -r requirements-dev.txt`).", 0
    seconds = max(3, int(args.duration))
    with tempfile.NamedTemporaryFile(suffix=".txt") as raw:
        spy = subprocess.Popen(
            [
                "taskset",
                "-c",
                str(args.client_cpu),
                str(py_spy),
                "record",
                "-p",
                str(pid),
                "-d",
                str(seconds),
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                raw.name,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)
        result = measure.wrk(url, key=key, connections=32, seconds=seconds, cpu=args.client_cpu)
        _, err = spy.communicate(timeout=seconds + 30)
        text = Path(raw.name).read_text() if spy.returncode == 0 else ""
    if not text:
        return f"py-spy failed: {err.strip()[-300:]}", result.ok
    return summarize(text), result.ok


def _package(frame: str) -> str:
    where = frame.rsplit(" (", 1)[-1]
    path = where.split(":", 1)[0]
    top = path.split("/", 1)[0].removesuffix(".py")
    if top in PROJECT:
        return "project: " + "/".join(path.split("/")[:2]).removesuffix(".py")
    return top


def _function(frame: str) -> str:
    name, _, where = frame.rpartition(" (")
    return f"{name} ({where.split(':', 1)[0]})"


def summarize(raw: str, top=20) -> str:
    by_package = collections.Counter()
    self_time = collections.Counter()
    inclusive = collections.Counter()
    total = idle = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_LEAVES):
            idle += n
            continue
        total += n
        by_package[_package(frames[-1])] += n
        self_time[_function(frames[-1])] += n
        for fn in {_function(f) for f in frames if _package(f).startswith("project")}:
            inclusive[fn] += n
    if not total:
        return "no samples"

    def table(title, counter, limit):
        rows = [f"| {title} | share of CPU samples |", "| --- | ---: |"]
        rows += [f"| `{name}` | {100 * n / total:.1f}% |" for name, n in counter.most_common(limit)]
        return "\n".join(rows)

    return "\n\n".join(
        [
            f"{total} samples on CPU ({idle} more in idle waits, left out).",
            "Where the CPU is spent, by the package of the innermost frame:",
            table("package", by_package, top),
            "Project functions, including what they call:",
            table("function", inclusive, top),
            "Innermost functions (self time):",
            table("function", self_time, top),
        ]
    )


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1]).read_text()))
