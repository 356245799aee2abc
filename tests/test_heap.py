"""The proxy's long-lived heap leaves the cyclic garbage collector's full collections (llmproxy/heap.py)."""

import subprocess
import sys

from tests.servers import ROOT

PROGRAM = """
import gc, time
from llmproxy import heap
heap.freeze_now_and_after_warmup(0.3)
after_import = gc.get_freeze_count()
warm = [[i] for i in range(5000)]  # what a warm-up builds and keeps
time.sleep(1.0)
print(after_import, gc.get_freeze_count(), len(gc.get_objects(2)))
"""


def test_what_lives_at_import_and_after_the_warmup_is_frozen():
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    after_import, after_warmup, left_in_gen2 = map(int, out.split())
    assert after_import > 0
    assert after_warmup >= after_import + 5000
    assert left_in_gen2 < 1000  # a full collection walks only what came after
