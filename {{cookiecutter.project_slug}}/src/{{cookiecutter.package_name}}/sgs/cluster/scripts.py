"""The cluster's Redis layout and the Lua scripts that change it atomically.

Keys (``P`` is ``cluster_prefix``)::

    P:node:<id>         string, TTL = lease   the node's lease (refreshed ~1/s)
    P:nodes             set                    every registered node (the reaper walks it)
    P:nodegroups:<id>   set                    groups where the node has members
    P:nodebinds:<id>    set                    keys the node holds
    P:bind:<key>        hash node, link, epoch who holds a login
    P:epoch:<key>       string                 the key's newest fencing epoch
    P:groups            set                    groups with members on any node
    P:gnodes:<group>    hash node -> count     which nodes need a group's messages
    P:gmembers:<group>  hash node/link -> label every member, cluster-wide
    P:lead:<name>       string, TTL = lease    which node leads ``name`` (RoomTick)
    P:seq:<name>        counter                the numbers the leaders hand out
    P:reaper            string, TTL = lease    the one node reaping dead nodes

Channels: ``P:group:<group>`` (broadcasts), ``P:to:<node>`` (pushes, kicks,
hand-over answers), ``P:ctl`` (interest: a node's first member joined a
group or its last left).

Epochs are microseconds of Redis's own clock (``TIME``), bumped past the
stored one: strictly increasing per key, and still larger than every epoch
a player-state store kept after Redis itself restarted empty.
"""

from __future__ import annotations

# Lua 5.1 formats numbers above 1e14 in exponent form: every epoch is written
# with string.format('%d'). Doubles hold integers exactly up to 2**53, and
# microseconds since 1970 stay below that until the year 2255.
_EPOCH = """
local function next_epoch(key)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local cur = tonumber(redis.call('GET', key) or '0')
  if cur >= now then now = cur + 1 end
  redis.call('SET', key, string.format('%d', now))
  return now
end
"""

#: KEYS: none. ARGV: prefix, node, link, key.
#: Returns {epoch, previous node or false, previous node alive (0/1)}.
BIND = (
    _EPOCH
    + """
local p, node, link, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local bk = p .. ':bind:' .. key
local e = next_epoch(p .. ':epoch:' .. key)
local prev = redis.call('HGET', bk, 'node')
redis.call('HSET', bk, 'node', node, 'link', link, 'epoch', string.format('%d', e))
redis.call('SADD', p .. ':nodebinds:' .. node, key)
local alive = 0
if prev and prev ~= node then
  redis.call('SREM', p .. ':nodebinds:' .. prev, key)
  alive = redis.call('EXISTS', p .. ':node:' .. prev)
end
return {e, prev or false, alive}
"""
)

#: Re-registration of a binding this node still holds (after a broker
#: restart, an outage or a lost lease). ARGV: prefix, node, link, key, epoch.
#: Returns 1 when the key is this node's again, 0 when a newer login holds it.
REBIND = """
local p, node, link, key, epoch = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local bk = p .. ':bind:' .. key
local cur = redis.call('HMGET', bk, 'node', 'link', 'epoch')
if cur[1] and not (cur[1] == node and cur[2] == link) and tonumber(cur[3]) > epoch then
  return 0
end
redis.call('HSET', bk, 'node', node, 'link', link, 'epoch', ARGV[5])
local ek = p .. ':epoch:' .. key
if tonumber(redis.call('GET', ek) or '0') < epoch then redis.call('SET', ek, ARGV[5]) end
redis.call('SADD', p .. ':nodebinds:' .. node, key)
return 1
"""

#: ARGV: prefix, node, link, key, epoch. Drops the binding only if it is still ours.
UNBIND = """
local p, node, link, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local bk = p .. ':bind:' .. key
local cur = redis.call('HMGET', bk, 'node', 'link', 'epoch')
if cur[1] == node and cur[2] == link and cur[3] == ARGV[5] then
  redis.call('DEL', bk)
  redis.call('SREM', p .. ':nodebinds:' .. node, key)
  return 1
end
return 0
"""

#: ARGV: prefix, node, group, member field (node/link), label, interest envelope.
#: Publishes the envelope on P:ctl when this is the node's first member.
JOIN = """
local p, node, g = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HSET', p .. ':gmembers:' .. g, ARGV[4], ARGV[5]) == 0 then return -1 end
local n = redis.call('HINCRBY', p .. ':gnodes:' .. g, node, 1)
if n == 1 then
  redis.call('SADD', p .. ':groups', g)
  redis.call('SADD', p .. ':nodegroups:' .. node, g)
  redis.call('PUBLISH', p .. ':ctl', ARGV[6])
end
return n
"""

#: ARGV: prefix, node, group, member field, interest envelope.
#: Publishes the envelope on P:ctl when the node's last member left.
LEAVE = """
local p, node, g = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HDEL', p .. ':gmembers:' .. g, ARGV[4]) == 0 then return -1 end
local gn = p .. ':gnodes:' .. g
local n = redis.call('HINCRBY', gn, node, -1)
if n <= 0 then
  redis.call('HDEL', gn, node)
  if redis.call('HLEN', gn) == 0 then redis.call('SREM', p .. ':groups', g) end
  redis.call('SREM', p .. ':nodegroups:' .. node, g)
  redis.call('PUBLISH', p .. ':ctl', ARGV[5])
end
return n
"""

#: Re-registration of a group's local members. ARGV: prefix, node, group,
#: interest envelope, then field, label pairs. Replaces the node's members.
RESYNC_GROUP = """
local p, node, g = ARGV[1], ARGV[2], ARGV[3]
local mk = p .. ':gmembers:' .. g
local mine = node .. '/'
for _, f in ipairs(redis.call('HKEYS', mk)) do
  if string.sub(f, 1, #mine) == mine then redis.call('HDEL', mk, f) end
end
local n = 0
for i = 5, #ARGV, 2 do
  redis.call('HSET', mk, ARGV[i], ARGV[i + 1])
  n = n + 1
end
redis.call('HSET', p .. ':gnodes:' .. g, node, n)
redis.call('SADD', p .. ':groups', g)
redis.call('SADD', p .. ':nodegroups:' .. node, g)
redis.call('PUBLISH', p .. ':ctl', ARGV[4])
return n
"""

#: Remove a node's bindings, memberships and registration. ARGV: prefix,
#: node, 1 to remove it even if its lease is still there (its own graceful
#: stop). Returns false when the node came back, else {bindings removed,
#: groups it left}.
REAP = """
local p, node, force = ARGV[1], ARGV[2], ARGV[3]
if force ~= '1' and redis.call('EXISTS', p .. ':node:' .. node) == 1 then return false end
local mine = node .. '/'
local left = {}
for _, g in ipairs(redis.call('SMEMBERS', p .. ':nodegroups:' .. node)) do
  local mk = p .. ':gmembers:' .. g
  for _, f in ipairs(redis.call('HKEYS', mk)) do
    if string.sub(f, 1, #mine) == mine then redis.call('HDEL', mk, f) end
  end
  local gn = p .. ':gnodes:' .. g
  redis.call('HDEL', gn, node)
  if redis.call('HLEN', gn) == 0 then redis.call('SREM', p .. ':groups', g) end
  table.insert(left, g)
end
local n = 0
for _, k in ipairs(redis.call('SMEMBERS', p .. ':nodebinds:' .. node)) do
  local bk = p .. ':bind:' .. k
  if redis.call('HGET', bk, 'node') == node then
    redis.call('DEL', bk)
    n = n + 1
  end
end
redis.call('DEL', p .. ':nodegroups:' .. node, p .. ':nodebinds:' .. node, p .. ':node:' .. node)
redis.call('SREM', p .. ':nodes', node)
return {n, left}
"""

#: ARGV: prefix, node, name, lease ms. The next number if this node leads, else false.
LEAD = """
local p, node, name = ARGV[1], ARGV[2], ARGV[3]
local k = p .. ':lead:' .. name
local cur = redis.call('GET', k)
if cur == node then
  redis.call('PEXPIRE', k, ARGV[4])
elseif not cur then
  redis.call('SET', k, node, 'PX', ARGV[4])
else
  return false
end
return redis.call('INCR', p .. ':seq:' .. name)
"""

#: ARGV: prefix. The registered nodes whose lease is current.
LIVE_NODES = """
local p = ARGV[1]
local live = {}
for _, n in ipairs(redis.call('SMEMBERS', p .. ':nodes')) do
  if redis.call('EXISTS', p .. ':node:' .. n) == 1 then table.insert(live, n) end
end
return live
"""

#: ARGV: prefix, node, lease ms. Take or keep the reaper lock; 1 if held.
REAPER_LOCK = """
local k = ARGV[1] .. ':reaper'
local cur = redis.call('GET', k)
if cur == ARGV[2] then
  redis.call('PEXPIRE', k, ARGV[3])
  return 1
end
if not cur then
  redis.call('SET', k, ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
