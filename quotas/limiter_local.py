"""The in-process limiter: the Redis script's semantics over a dict, for one process.

Used when REDIS_URL is not set, and for a fail-open tenant while Redis does
not answer. Each call runs start to finish without awaiting, so on one event
loop check and reserve cannot interleave; the lock covers other threads (the
admin reads usage from a worker thread).
"""

import heapq
import threading

from .admission import Outcome, admit


class _Window:
    __slots__ = ("expires_at", "used", "held", "holds", "lapses")

    def __init__(self, expires_at):
        self.expires_at = expires_at
        self.used = 0
        self.held = 0
        self.holds = {}  # reservation id -> (hold, output), or None once its hold has lapsed
        self.lapses = []  # heap of (lapse time, reservation id)

    def reclaim(self, now):
        while self.lapses and self.lapses[0][0] <= now:
            _, rid = heapq.heappop(self.lapses)
            held = self.holds.get(rid)
            if held is not None:
                self.held -= held[0]
                self.holds[rid] = None

    def committed(self):
        return self.used + self.held


_windows = {}
_lock = threading.Lock()
_last_sweep = 0.0


def _window(key, now):
    found = _windows.get(key)
    if found is not None and found.expires_at <= now:
        del _windows[key]
        return None
    return found


def _sweep(now):
    # Windows that ended long ago would otherwise pile up in a long-lived process.
    global _last_sweep
    if abs(now - _last_sweep) < 60:  # abs: tests move the clock backwards too
        return
    _last_sweep = now
    for key in [key for key, w in _windows.items() if w.expires_at <= now]:
        del _windows[key]


def reserve(slots, plan, rid, now, hold_seconds):
    with _lock:
        _sweep(now)
        windows = [_window(slot.key, now) for slot in slots]
        for w in windows:
            if w is not None:
                w.reclaim(now)
        committed = [w.committed() if w is not None else 0 for w in windows]
        output, failed, holds = admit(slots, committed, plan)
        if failed:
            return Outcome(admitted=False, output=0, committed=committed, failed=failed)
        for i, slot in enumerate(slots):
            w = windows[i]
            if w is None:
                w = _windows[slot.key] = _Window(now + slot.ttl(now, hold_seconds))
            w.held += holds[i]
            w.holds[rid] = (holds[i], output)
            heapq.heappush(w.lapses, (now + hold_seconds, rid))
            committed[i] += holds[i]
        return Outcome(admitted=True, output=output, committed=committed, failed=[])


def settle(slots, rid, amounts):
    with _lock:
        for slot, amount in zip(slots, amounts, strict=True):
            # Like a Redis key, a window lives until it is swept, past its end: a late settle lands in it.
            w = _windows.get(slot.key)
            if w is None or rid not in w.holds:
                continue  # settled already, or its window is gone
            held = w.holds.pop(rid)
            if held is not None:
                w.held -= held[0]
            w.used += amount


def usage(slot, now):
    with _lock:
        w = _window(slot.key, now)
        if w is None:
            return 0, 0
        held = w.held
        for lapse, rid in w.lapses:
            if lapse <= now and w.holds.get(rid) is not None:
                held -= w.holds[rid][0]
        return w.used, held
