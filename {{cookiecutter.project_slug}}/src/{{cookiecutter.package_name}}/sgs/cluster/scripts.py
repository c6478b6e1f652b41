"""The Lua scripts that change the cluster's Redis state atomically.

Every script gets the keys it touches directly as ``KEYS``, built by
:class:`~.keys.Keys` (the one module naming the layout). Scripts that walk
keys only known inside Redis (a reaped node's groups and bindings) also get
the prefix and build those names with the shapes :mod:`.keys` documents.

Epochs are microseconds of Redis's own clock (``TIME``), bumped past the
stored one: strictly increasing per key, and still larger than every epoch
a player-state store kept after Redis itself restarted empty.
"""

from __future__ import annotations

# Lua 5.1 formats numbers above 1e14 in exponent form: every epoch is written
# with string.format('%d'). Doubles hold integers exactly up to 2**53, and
# microseconds since 1970 stay below that until the year 2255.
_EPOCH = """
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function next_epoch(key, now)
  local cur = tonumber(redis.call('GET', key) or '0')
  if cur >= now then now = cur + 1 end
  redis.call('SET', key, string.format('%d', now))
  return now
end
"""

#: KEYS: bind, epoch, this node's binds, run. ARGV: prefix, node, link, key, run id.
#: Returns {epoch, previous node or false, previous node alive (0/1),
#: milliseconds since the broker's run began, its id (it begins here when missing),
#: previous link or false, previous epoch or false}.
BIND = (
    _EPOCH
    + """
local bk, ek, mine, rk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local p, node, link, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_us()
local run = redis.call('HMGET', rk, 'id', 'born')
local id, born = run[1], run[2]
if not id then
  id, born = ARGV[5], string.format('%d', math.floor(now / 1000))
  redis.call('HSET', rk, 'id', id, 'born', born)
end
local e = next_epoch(ek, now)
local was = redis.call('HMGET', bk, 'node', 'link', 'epoch')
local prev = was[1]
redis.call('HSET', bk, 'node', node, 'link', link, 'epoch', string.format('%d', e))
-- Whom WITHDRAW gives the key back to if this bind's login is refused after all:
-- the holder on another node. A bind replacing a link of this same node keeps
-- the one recorded before (two refused logins here in a row still return the
-- account to its real holder elsewhere); an unbound key has nobody to return to.
if not prev then
  redis.call('HDEL', bk, 'pnode', 'plink', 'pepoch')
elseif prev ~= node then
  redis.call('HSET', bk, 'pnode', prev, 'plink', was[2] or '', 'pepoch', was[3] or '0')
end
redis.call('SADD', mine, key)
local alive = 0
if prev and prev ~= node then
  redis.call('SREM', p .. ':nodebinds:' .. prev, key)
  alive = redis.call('EXISTS', p .. ':node:' .. prev)
end
return {e, prev or false, alive, math.floor(now / 1000) - tonumber(born), id, was[2] or false, was[3] or false}
"""
)

#: Check (and where still allowed, re-take) the bindings this node holds.
#: KEYS: run, this node's binds, then bind and epoch key per binding. ARGV:
#: node, 1 if the broker lost its data since this node took them, the run id
#: this node knows, a run id to start with when there is none, then key, link,
#: epoch per binding. Returns {-1, run id} without touching anything when the
#: run is not the one the node knows (the broker lost its data: the node
#: recovers first), else 1 (still this link's) or 0 (lost) per binding.
#:
#: A binding is kept when Redis still names this link at this epoch; re-taken
#: when it is gone (reaped, or lost with the broker's data) and no newer login
#: took the account meanwhile (its epoch key is not newer); lost otherwise.
VALIDATE = """
local rk, mine = KEYS[1], KEYS[2]
local node, recovering = ARGV[1], ARGV[2] == '1'
local run = redis.call('HGET', rk, 'id')
if not run then
  local t = redis.call('TIME')
  run = ARGV[4]
  redis.call('HSET', rk, 'id', run, 'born', string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
end
if run ~= ARGV[3] then return {-1, run} end
local out = {}
for i = 1, (#KEYS - 2) / 2 do
  local bk, ek = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local key, link, epoch = ARGV[3 * i + 2], ARGV[3 * i + 3], ARGV[3 * i + 4]
  local want = tonumber(epoch)
  local cur = redis.call('HMGET', bk, 'node', 'link', 'epoch')
  local ok = 0
  if cur[1] then
    if cur[1] == node and cur[2] == link and cur[3] == epoch then
      ok = 1
    elseif tonumber(cur[3]) < want then
      ok = 2
    end
  else
    local stored = redis.call('GET', ek)
    if (stored and tonumber(stored) <= want) or (not stored and recovering) then ok = 2 end
  end
  if ok == 2 then
    redis.call('HSET', bk, 'node', node, 'link', link, 'epoch', epoch)
    if tonumber(redis.call('GET', ek) or '0') < want then redis.call('SET', ek, epoch) end
    redis.call('PERSIST', ek)
    redis.call('SADD', mine, key)
    ok = 1
  end
  out[i] = ok
end
return out
"""

#: KEYS: bind, epoch, this node's binds. ARGV: node, link, epoch,
#: key, epoch key TTL ms. Drops the binding only if it is still this link's;
#: the epoch key then expires (kept long enough to fence any straggler).
UNBIND = """
local bk, ek, mine = KEYS[1], KEYS[2], KEYS[3]
local cur = redis.call('HMGET', bk, 'node', 'link', 'epoch')
if cur[1] == ARGV[1] and cur[2] == ARGV[2] and cur[3] == ARGV[3] then
  redis.call('DEL', bk)
  redis.call('SREM', mine, ARGV[4])
  redis.call('PEXPIRE', ek, ARGV[5])
  return 1
end
return 0
"""

#: Withdraw a bind whose login was refused without knowing whether the BIND ran
#: (its answer did not come in time; it may run later). KEYS: bind, epoch, this
#: node's binds. ARGV: prefix, node, link, key, epoch TTL (ms). Only while the
#: binding is still this link's: it goes back to the holder on another node the
#: BIND displaced, if that node is alive (it may hold unflushed state, and a
#: login elsewhere must kick it, not find the key free); else it is dropped as
#: UNBIND does. Returns 2 when given back, 1 when dropped, 0 when not this link's.
WITHDRAW = """
local bk, ek, mine = KEYS[1], KEYS[2], KEYS[3]
local p, node, link, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cur = redis.call('HMGET', bk, 'node', 'link', 'pnode', 'plink', 'pepoch')
if cur[1] ~= node or cur[2] ~= link then return 0 end
redis.call('SREM', mine, key)
local pnode = cur[3]
if pnode and pnode ~= node and redis.call('EXISTS', p .. ':node:' .. pnode) == 1 then
  redis.call('HSET', bk, 'node', pnode, 'link', cur[4], 'epoch', cur[5])
  redis.call('HDEL', bk, 'pnode', 'plink', 'pepoch')
  redis.call('SADD', p .. ':nodebinds:' .. pnode, key)
  return 2
end
redis.call('DEL', bk)
redis.call('PEXPIRE', ek, ARGV[5])
return 1
"""

#: Give a binding back to the holder BIND replaced (a login refused because
#: that holder, alive, did not hand over). KEYS: bind, this node's binds, the
#: previous node's binds. ARGV: node, link, epoch, previous node, link, epoch,
#: key. Only while the binding is still this link's; 1 when given back.
RESTORE = """
local bk = KEYS[1]
local cur = redis.call('HMGET', bk, 'node', 'link', 'epoch')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] or cur[3] ~= ARGV[3] then return 0 end
redis.call('HSET', bk, 'node', ARGV[4], 'link', ARGV[5], 'epoch', ARGV[6])
redis.call('HDEL', bk, 'pnode', 'plink', 'pepoch')
redis.call('SREM', KEYS[2], ARGV[7])
redis.call('SADD', KEYS[3], ARGV[7])
return 1
"""

#: KEYS: group members, group nodes, groups, this node's groups.
#: ARGV: node, group, member field (node/link), label, interest envelope, ctl channel.
#: Publishes the envelope on the ctl channel when this is the node's first member.
JOIN = """
local mk, gn, groups, mine = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local node, g = ARGV[1], ARGV[2]
if redis.call('HSET', mk, ARGV[3], ARGV[4]) == 0 then return -1 end
local n = redis.call('HINCRBY', gn, node, 1)
if n == 1 then
  redis.call('SADD', groups, g)
  redis.call('SADD', mine, g)
  redis.call('PUBLISH', ARGV[6], ARGV[5])
end
return n
"""

#: KEYS: as JOIN. ARGV: node, group, member field, interest envelope, ctl channel.
#: Publishes the envelope when the node's last member left.
LEAVE = """
local mk, gn, groups, mine = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local node, g = ARGV[1], ARGV[2]
if redis.call('HDEL', mk, ARGV[3]) == 0 then return -1 end
local n = redis.call('HINCRBY', gn, node, -1)
if n <= 0 then
  redis.call('HDEL', gn, node)
  if redis.call('HLEN', gn) == 0 then redis.call('SREM', groups, g) end
  redis.call('SREM', mine, g)
  redis.call('PUBLISH', ARGV[5], ARGV[4])
end
return n
"""

#: Replace the node's members of one group with its whole local truth (none:
#: the node leaves the group). KEYS: as JOIN. ARGV: node, group, join
#: envelope, leave envelope, ctl channel, then field, label pairs.
RESYNC_GROUP = """
local mk, gn, groups, mine = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local node, g = ARGV[1], ARGV[2]
local prefix = node .. '/'
for _, f in ipairs(redis.call('HKEYS', mk)) do
  if string.sub(f, 1, #prefix) == prefix then redis.call('HDEL', mk, f) end
end
local n = 0
for i = 6, #ARGV, 2 do
  redis.call('HSET', mk, ARGV[i], ARGV[i + 1])
  n = n + 1
end
if n > 0 then
  redis.call('HSET', gn, node, n)
  redis.call('SADD', groups, g)
  redis.call('SADD', mine, g)
  redis.call('PUBLISH', ARGV[5], ARGV[3])
else
  redis.call('HDEL', gn, node)
  if redis.call('HLEN', gn) == 0 then redis.call('SREM', groups, g) end
  redis.call('SREM', mine, g)
  redis.call('PUBLISH', ARGV[5], ARGV[4])
end
return n
"""

#: Remove a node's bindings, memberships, rooms and registration. KEYS: its lease,
#: nodes, its groups, its binds, groups. ARGV: prefix, node, 1 to remove it
#: even if its lease is still there (its own stop or restart), epoch key TTL
#: ms. Returns false when the node came back, else {bindings removed, groups
#: it left}.
REAP = """
local lease, nodes, ngroups, nbinds, groups = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local p, node, force = ARGV[1], ARGV[2], ARGV[3]
if force ~= '1' and redis.call('EXISTS', lease) == 1 then return false end
local prefix = node .. '/'
local left = {}
for _, g in ipairs(redis.call('SMEMBERS', ngroups)) do
  local mk = p .. ':gmembers:' .. g
  for _, f in ipairs(redis.call('HKEYS', mk)) do
    if string.sub(f, 1, #prefix) == prefix then redis.call('HDEL', mk, f) end
  end
  local gn = p .. ':gnodes:' .. g
  redis.call('HDEL', gn, node)
  if redis.call('HLEN', gn) == 0 then redis.call('SREM', groups, g) end
  table.insert(left, g)
end
local n = 0
for _, k in ipairs(redis.call('SMEMBERS', nbinds)) do
  local bk = p .. ':bind:' .. k
  if redis.call('HGET', bk, 'node') == node then
    redis.call('DEL', bk)
    redis.call('PEXPIRE', p .. ':epoch:' .. k, ARGV[4])
    n = n + 1
  end
end
local nrooms = p .. ':noderooms:' .. node
for _, id in ipairs(redis.call('SMEMBERS', nrooms)) do
  local rk = p .. ':room:' .. id
  local t = redis.call('HGET', rk, 'type')
  if t then redis.call('ZREM', p .. ':rooms:' .. t, id) end
  redis.call('DEL', rk, p .. ':rseats:' .. id)
end
redis.call('DEL', ngroups, nbinds, lease, nrooms)
redis.call('SREM', nodes, node)
return {n, left}
"""

#: KEYS: lead, seq. ARGV: node, lease ms. The next number if this node leads, else false.
LEAD = """
local k = KEYS[1]
local cur = redis.call('GET', k)
if cur == ARGV[1] then
  redis.call('PEXPIRE', k, ARGV[2])
elseif not cur then
  redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
else
  return false
end
return redis.call('INCR', KEYS[2])
"""

#: KEYS: nodes. ARGV: prefix. The registered nodes whose lease is current.
LIVE_NODES = """
local live = {}
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. ':node:' .. n) == 1 then table.insert(live, n) end
end
return live
"""

#: KEYS: reaper. ARGV: node, lease ms. Take or keep the reaper lock; 1 if held.
REAPER_LOCK = """
local k = KEYS[1]
local cur = redis.call('GET', k)
if cur == ARGV[1] then
  redis.call('PEXPIRE', k, ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

#: KEYS: run. ARGV: run id to start with when missing. Returns the run id.
RUN = """
local id = redis.call('HGET', KEYS[1], 'id')
if id then return id end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'born', string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
return ARGV[1]
"""


# -- rooms (sgs/rooms): the listing and the seats -------------------------------

_ROOMS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live_seats(sk, now)
  local n = 0
  local seats = redis.call('HGETALL', sk)
  for i = 1, #seats, 2 do
    if tonumber(seats[i + 1]) > now then n = n + 1 else redis.call('HDEL', sk, seats[i]) end
  end
  return n
end
local function fits(meta, filters)
  if not filters then return true end
  local m = {}
  if meta and meta ~= '' then m = cjson.decode(meta) end
  for k, v in pairs(filters) do
    if m[k] ~= v then return false end
  end
  return true
end
"""

#: KEYS: the type's listing, the claim. ARGV: prefix, filters JSON or '', seat id,
#: seat ms, claim ms, node. The oldest listed, unlocked, public room of a live
#: owner matching the filters with a free seat (reserved seats count): {'seat',
#: room id, owner, expiry ms}; else {'create'} once per claim, {'wait'} meanwhile.
ROOM_RESERVE = (
    _ROOMS
    + """
local p = ARGV[1]
local filters = nil
if ARGV[2] ~= '' then filters = cjson.decode(ARGV[2]) end
local now = now_ms()
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local r = redis.call('HMGET', p .. ':room:' .. id, 'clients', 'max', 'metadata', 'locked', 'private', 'owner')
  if r[1] and r[4] ~= '1' and r[5] ~= '1' and redis.call('EXISTS', p .. ':node:' .. r[6]) == 1
     and fits(r[3], filters) then
    local sk = p .. ':rseats:' .. id
    local max = tonumber(r[2])
    if max <= 0 or tonumber(r[1]) + live_seats(sk, now) < max then
      local expiry = now + tonumber(ARGV[4])
      redis.call('HSET', sk, ARGV[3], expiry)
      return {'seat', id, r[6], expiry}
    end
  end
end
if redis.call('SET', KEYS[2], ARGV[6], 'NX', 'PX', ARGV[5]) then return {'create'} end
return {'wait'}
"""
)

#: KEYS: room, its seats. ARGV: prefix, seat id, seat ms. {'seat', owner, expiry}
#: or {code}: no_such_room (or its owner's lease is gone), room_locked, room_full.
ROOM_RESERVE_IN = (
    _ROOMS
    + """
local r = redis.call('HMGET', KEYS[1], 'clients', 'max', 'locked', 'owner')
if not r[1] or redis.call('EXISTS', ARGV[1] .. ':node:' .. r[4]) == 0 then return {'no_such_room'} end
if r[3] == '1' then return {'room_locked'} end
local now = now_ms()
local max = tonumber(r[2])
if max > 0 and tonumber(r[1]) + live_seats(KEYS[2], now) >= max then return {'room_full'} end
local expiry = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], expiry)
return {'seat', r[4], expiry}
"""
)

#: KEYS: room, its seats, the type's listing, the owner's rooms, the order
#: counter. ARGV: id, type, max, metadata, locked, private, owner, seat id,
#: seat ms. Lists a new room with its creator's seat; returns the expiry.
ROOM_CREATED = (
    _ROOMS
    + """
local order = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[1], 'type', ARGV[2], 'clients', 0, 'max', ARGV[3], 'metadata', ARGV[4],
  'locked', ARGV[5], 'private', ARGV[6], 'owner', ARGV[7])
redis.call('ZADD', KEYS[3], order, ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
local expiry = now_ms() + tonumber(ARGV[9])
redis.call('HSET', KEYS[2], ARGV[8], expiry)
return expiry
"""
)

#: KEYS: room, its seats. ARGV: seat id. 1 when the seat was live (it becomes a
#: client, once), else 0.
ROOM_CONSUME = (
    _ROOMS
    + """
local expiry = redis.call('HGET', KEYS[2], ARGV[1])
if not expiry then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if tonumber(expiry) <= now_ms() or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'clients', 1)
return 1
"""
)

#: KEYS: room. ARGV: clients, max, metadata, locked, private. The owner's
#: change to a room still listed (a removed room is not brought back).
ROOM_PUBLISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'clients', ARGV[1], 'max', ARGV[2], 'metadata', ARGV[3],
  'locked', ARGV[4], 'private', ARGV[5])
return 1
"""

#: KEYS: room, its seats, the type's listing, the owner's rooms. ARGV: id.
ROOM_REMOVE = """
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
return 1
"""

#: KEYS: seats. Live reservations of a room.
ROOM_SEATS = (
    _ROOMS
    + """
return live_seats(KEYS[1], now_ms())
"""
)

#: KEYS: the type's listing. ARGV: prefix, filters JSON or ''. Rows {id, clients,
#: max, metadata, locked, private, owner} of listed public rooms of live owners.
ROOM_LIST = (
    _ROOMS
    + """
local p = ARGV[1]
local filters = nil
if ARGV[2] ~= '' then filters = cjson.decode(ARGV[2]) end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local r = redis.call('HMGET', p .. ':room:' .. id, 'clients', 'max', 'metadata', 'locked', 'private', 'owner')
  if r[1] and r[5] ~= '1' and redis.call('EXISTS', p .. ':node:' .. r[6]) == 1 and fits(r[3], filters) then
    table.insert(out, {id, r[1], r[2], r[3] or '', r[4], r[5], r[6]})
  end
end
return out
"""
)

ALL = (
    "BIND",
    "VALIDATE",
    "UNBIND",
    "WITHDRAW",
    "JOIN",
    "LEAVE",
    "RESYNC_GROUP",
    "REAP",
    "LEAD",
    "LIVE_NODES",
    "REAPER_LOCK",
    "RUN",
    "RESTORE",
    "ROOM_RESERVE",
    "ROOM_RESERVE_IN",
    "ROOM_CREATED",
    "ROOM_CONSUME",
    "ROOM_PUBLISH",
    "ROOM_REMOVE",
    "ROOM_SEATS",
    "ROOM_LIST",
)
