"""The limiter on Redis: one Lua script checks and reserves every limit of a request atomically.

Layout, per limit and window (all of one request's keys carry the tenant's hash
tag, so each script touches a single Cluster slot):

    lp:q:{t<tenant>}:<limit>:<metric>:<period>:<window start>     hash
        used       settled usage (integer: requests, tokens, nano-dollars)
        held       sum of the live reservations' holds
        r:<id>     "<hold>/<output tokens>" per live reservation, "x" once its hold has lapsed
    ...:x                                                        sorted set: reservation id -> lapse time

The window is chosen by the caller's clock (key names must be known before the
call for Cluster routing); the script itself uses the `now` it is given, so
tests can move time. Holds lapse after a bounded time: a process killed
between reserve and settle cannot pin a budget until the month ends. A Redis
that restarts empty forgets the usage of the current windows (give it
persistence where that matters); settles of reservations it forgot do nothing.
"""

import asyncio
import functools

from llmproxy.redis_client import Script, get_sync_redis

from .admission import Outcome

RESERVE = """
local rid, now, lapse = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local input_tokens, max_output, need_output = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local input_cost, output_price = tonumber(ARGV[7]), tonumber(ARGV[8])
local n = #KEYS / 2
local field = 'r:' .. rid

local function int(x) return string.format('%d', x) end

local function committed(h)
  local c = redis.call('HMGET', h, 'used', 'held')
  return (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0)
end

-- Holds never settled (their process died) go back to the window; the field
-- stays as 'x' so that a late settle still charges the real usage, once.
local function reclaim(h, z)
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 256)
  if #gone == 0 then return end
  local freed = 0
  for _, r in ipairs(gone) do
    local v = redis.call('HGET', h, 'r:' .. r)
    if v and v ~= 'x' then
      freed = freed + tonumber(string.match(v, '^(%d+)'))
      redis.call('HSET', h, 'r:' .. r, 'x')
    end
  end
  redis.call('ZREM', z, unpack(gone))
  if freed ~= 0 then redis.call('HINCRBY', h, 'held', int(-freed)) end
end

local reply = {1, 0}

-- redis-py resends a command that timed out: a reservation already made is answered again, not made twice.
local prior = redis.call('HGET', KEYS[1], field)
if prior and prior ~= 'x' then
  reply[2] = tonumber(string.match(prior, '/(%d+)$'))
  for i = 1, n do
    reply[2 * i + 1] = committed(KEYS[2 * i - 1])
    reply[2 * i + 2] = 0
  end
  return reply
end

local free, output = {}, max_output
for i = 1, n do
  local h = KEYS[2 * i - 1]
  reclaim(h, KEYS[2 * i])
  local metric, capacity = ARGV[6 + 3 * i], tonumber(ARGV[7 + 3 * i])
  local c = committed(h)
  local left = capacity - c
  local ok
  if metric == 'requests' then
    ok = left >= 1
  elseif metric == 'tokens' then
    local room = left - input_tokens
    ok = room >= need_output
    if ok and room < output then output = room end
  else
    local room = left - input_cost
    ok = room >= 0
    if ok and output_price > 0 then
      local fits = math.floor(room / output_price)
      ok = fits >= need_output
      if ok and fits < output then output = fits end
    end
  end
  free[i] = left
  reply[2 * i + 1] = c
  if ok then reply[2 * i + 2] = 0 else reply[2 * i + 2] = 1; reply[1] = 0 end
end
if reply[1] == 0 then return reply end

reply[2] = output
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local metric, ttl = ARGV[6 + 3 * i], ARGV[8 + 3 * i]
  local amount
  if metric == 'requests' then
    amount = 1
  elseif metric == 'tokens' then
    amount = input_tokens + output
  else
    amount = math.min(input_cost + math.ceil(output * output_price), free[i])
  end
  redis.call('HINCRBY', h, 'held', int(amount))
  redis.call('HSET', h, field, int(amount) .. '/' .. int(output))
  redis.call('ZADD', z, lapse, rid)
  redis.call('EXPIRE', h, ttl)
  redis.call('EXPIRE', z, ttl)
  reply[2 * i + 1] = reply[2 * i + 1] + amount
end
return reply
"""

# Settles of several reservations in one call (see settle()). ARGV, per reservation: its number of
# limits n, its id, then the real usage to charge per limit; KEYS: its 2n keys, in the same order.
# A reservation already settled (or whose window has expired) has no field: nothing happens.
SETTLE = """
local k, a = 0, 1
while a <= #ARGV do
  local n, field = tonumber(ARGV[a]), 'r:' .. ARGV[a + 1]
  for i = 1, n do
    local h, z, charge = KEYS[k + 2 * i - 1], KEYS[k + 2 * i], ARGV[a + 1 + i]
    local v = redis.call('HGET', h, field)
    if v then
      if v ~= 'x' then
        local amount = tonumber(string.match(v, '^(%d+)'))
        if amount ~= 0 then redis.call('HINCRBY', h, 'held', string.format('%d', -amount)) end
        redis.call('ZREM', z, ARGV[a + 1])
      end
      redis.call('HDEL', h, field)
      if charge ~= '0' then redis.call('HINCRBY', h, 'used', charge) end
    end
  end
  k = k + 2 * n
  a = a + 2 + n
end
return 1
"""

USAGE = """
local c = redis.call('HMGET', KEYS[1], 'used', 'held')
local held = tonumber(c[2]) or 0
for _, r in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])) do
  local v = redis.call('HGET', KEYS[1], 'r:' .. r)
  if v and v ~= 'x' then held = held - tonumber(string.match(v, '^(%d+)')) end
end
return {tonumber(c[1]) or 0, held}
"""


_reserve_script = Script(RESERVE)
_settle_script = Script(SETTLE)
_usage_script = Script(USAGE)

# Release tasks of reservations whose caller was cancelled, kept referenced until they finish.
_orphans = set()


def _keys(slots):
    return [key for slot in slots for key in (slot.key, slot.deadlines_key)]


async def reserve(client, slots, plan, rid, now, hold_seconds):
    args = [
        rid,
        repr(float(now)),
        repr(float(now + hold_seconds)),
        plan.input_tokens,
        plan.max_output,
        plan.need_output,
        plan.input_cost,
        repr(plan.output_price),
    ]
    for slot in slots:
        args += [slot.metric, slot.capacity, slot.ttl(now, hold_seconds)]
    call = asyncio.ensure_future(_reserve_script.run(client, _keys(slots), args))
    try:
        reply = await asyncio.shield(call)
    except asyncio.CancelledError:
        # The script may run anyway; nobody would settle what it reserved, so give it back.
        call.add_done_callback(functools.partial(_release_orphan, client, slots, rid))
        raise
    return Outcome(
        admitted=reply[0] == 1,
        output=int(reply[1]),
        committed=[int(c) for c in reply[2::2]],
        failed=[i for i, flag in enumerate(reply[3::2]) if flag],
    )


def _release_orphan(client, slots, rid, call):
    if call.cancelled() or call.exception() is not None or call.result()[0] != 1:
        return
    task = asyncio.ensure_future(settle(client, slots, rid, [0] * len(slots)))
    _orphans.add(task)
    task.add_done_callback(_forget)


def _forget(task):
    _orphans.discard(task)
    if not task.cancelled():
        task.exception()  # a failed release lapses with its hold; retrieved so asyncio does not complain


async def settle(client, slots, rid, amounts):
    """Charge a reservation's real usage and free its holds; returns once Redis has done it.

    The settles a loop gathers in one turn go to Redis together, one script call
    per tenant (its keys share a Cluster slot): under load, answers end in
    bursts, and one round trip for the burst costs a fraction of one each.
    """
    if not slots:
        return
    loop = asyncio.get_running_loop()
    waiting = _waiting_settles.get(loop)
    if waiting is None:
        waiting = _waiting_settles[loop] = {}
        loop.call_soon(_send_settles, loop)
    key = (id(client), slots[0].key.partition("{")[2].partition("}")[0])
    batch = waiting.get(key)
    if batch is None or len(batch.futures) >= SETTLES_PER_CALL:
        if batch is not None:
            waiting[(key, len(waiting))] = batch  # full: it goes as it is
        batch = waiting[key] = _SettleBatch(client)
    batch.keys += _keys(slots)
    batch.args += [len(slots), rid, *amounts]
    done = loop.create_future()
    batch.futures.append(done)
    await done


SETTLES_PER_CALL = 64
_waiting_settles: dict = {}


class _SettleBatch:
    __slots__ = ("client", "keys", "args", "futures")

    def __init__(self, client):
        self.client, self.keys, self.args, self.futures = client, [], [], []

    async def send(self):
        try:
            await _settle_script.run(self.client, self.keys, self.args)
        except Exception as exc:
            for done in self.futures:
                if not done.done():
                    done.set_exception(exc)
        else:
            for done in self.futures:
                if not done.done():
                    done.set_result(None)


def _send_settles(loop):
    for batch in _waiting_settles.pop(loop).values():
        task = loop.create_task(batch.send())
        _orphans.add(task)
        task.add_done_callback(_orphans.discard)


def usage(slot, now):
    """(used, held) of one slot's window, from the process's synchronous client (cluster-aware)."""
    used, held = _usage_script.run_sync(get_sync_redis(), [slot.key, slot.deadlines_key], [repr(float(now))])
    return int(used), int(held)
