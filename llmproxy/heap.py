"""The heap of a long-running proxy process, kept out of the cyclic garbage collector's way.

A full (generation 2) collection walks every object the collector tracks: the
150-200 thousand of a warmed-up process took 40-100 ms on the benchmark's
machine, during which no request moves, and those pauses were most of the p99
latency at concurrency 1. What lives as long as the process (modules, Django's
app registry and URL resolvers, the tokenizer, pools and caches) is moved to
the permanent generation (gc.freeze) once the application is imported and once
more after the warm-up, so that a full collection walks only what requests
create. Frozen objects are still freed by reference counting; only a reference
cycle among them is never collected, and the structures frozen here stay until
the process ends anyway (a request in flight at the second freeze may keep a
cycle or two: bounded, once).
"""

import gc
import threading

WARMUP_SECONDS = 60.0


def freeze_long_lived():
    gc.collect()
    gc.freeze()


def freeze_now_and_after_warmup(warmup_seconds=WARMUP_SECONDS):
    freeze_long_lived()
    # A timer thread rather than the event loop: the same under Daphne and uvicorn, no per-request cost.
    timer = threading.Timer(warmup_seconds, freeze_long_lived)
    timer.daemon = True
    timer.name = "heap-freeze"
    timer.start()
