"""Lua scripts of the Redis backend: each state change runs atomically inside Redis.

A record with index ``n`` is the stream entry ``n-0`` with fields ``d`` (data), ``r`` (request
id) and ``t`` (tags as JSON). KEYS are always: 1 the stream, 2 the index counter, 3 the hash
request id -> index. A consumer is alive while its key ``<alive prefix><uid>`` holds its session
token (a key with a time to live: the lease).
"""

from __future__ import annotations

# Helpers shared by the scripts (prepended to each).
_COMMON = """
local function idx(id) return string.match(id, '^(%d+)') end
local function num(id) return tonumber(idx(id)) end
local function fields(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
local function groups(stream)
  if redis.call('EXISTS', stream) == 0 then return {} end
  local out = {}
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do out[#out + 1] = fields(g) end
  return out
end
local function forget(stream, rids, id)
  local e = redis.call('XRANGE', stream, id, id)
  if #e == 0 then return 0 end
  local f = fields(e[1][2])
  if f['r'] and redis.call('HGET', rids, f['r']) == idx(id) then
    redis.call('HDEL', rids, f['r'])
  end
  return redis.call('XDEL', stream, id)
end
local function session_ok(key, token) return redis.call('GET', key) == token end
"""

# ARGV: max length, then data, request id, tags json for each record; returns indexes (-1: full)
PUT = """
local maxlen = tonumber(ARGV[1])
local room = (#ARGV - 1) / 3
if maxlen > 0 then room = math.max(0, math.min(room, maxlen - redis.call('XLEN', KEYS[1]))) end
local out = {}
for i = 2, #ARGV, 3 do
  if #out < room then
    local n = redis.call('INCR', KEYS[2])
    redis.call('XADD', KEYS[1], n .. '-0', 'd', ARGV[i], 'r', ARGV[i + 1], 't', ARGV[i + 2])
    redis.call('HSET', KEYS[3], ARGV[i + 1], n)
    out[#out + 1] = n
  else
    out[#out + 1] = -1
  end
end
return out
"""

# ARGV: ids...; returns the indexes removed
DELETE = """
local gs = groups(KEYS[1])
local out = {}
for _, id in ipairs(ARGV) do
  if forget(KEYS[1], KEYS[3], id) == 1 then
    for _, g in ipairs(gs) do redis.call('XACK', KEYS[1], g['name'], id) end
    out[#out + 1] = num(id)
  end
end
return out
"""

# ARGV: before (index); returns how many went
TRUNCATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local gs = groups(KEYS[1])
local total = 0
while true do
  local batch = redis.call('XRANGE', KEYS[1], '-', '(' .. ARGV[1] .. '-0', 'COUNT', 500)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    for _, g in ipairs(gs) do redis.call('XACK', KEYS[1], g['name'], e[1]) end
    total = total + forget(KEYS[1], KEYS[3], e[1])
  end
end
return total
"""

# ARGV: alive prefix template pieces are per group, so the caller passes the key base;
# returns {length, added, first or -1, {gid, cursor, pending, live consumers}...}
STATS = """
local length = redis.call('XLEN', KEYS[1])
local added = tonumber(redis.call('GET', KEYS[2]) or '0')
local first = -1
if length > 0 then first = num(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]) end
local out = {length, added, first}
for _, g in ipairs(groups(KEYS[1])) do
  local prefix = ARGV[1] .. string.len(g['name']) .. ':' .. g['name'] .. ':'
  local live = 0
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], g['name'])) do
    if redis.call('EXISTS', prefix .. fields(c)['name']) == 1 then live = live + 1 end
  end
  out[#out + 1] = {g['name'], num(g['last-delivered-id']), g['pending'], live}
end
return out
"""

# ARGV: id, gid; returns nil (no record) or {consumer, pending 0/1, wait count}
POSITION = """
local id = ARGV[1]
if #redis.call('XRANGE', KEYS[1], id, id) == 0 then return nil end
local cursor = 0
for _, g in ipairs(groups(KEYS[1])) do
  if g['name'] == ARGV[2] then
    local p = redis.call('XPENDING', KEYS[1], ARGV[2], id, id, 1)
    if #p > 0 then return {p[1][2], 1, 0} end
    cursor = num(g['last-delivered-id'])
  end
end
if num(id) <= cursor then return {'', 0, 0} end
local ahead = redis.call('XRANGE', KEYS[1], '(' .. string.format('%d', cursor) .. '-0', '(' .. id)
return {'', 0, #ahead}
"""

# ARGV: gid, start id, alive key, token, lease ms
JOIN = """
local exists = false
for _, g in ipairs(groups(KEYS[1])) do if g['name'] == ARGV[1] then exists = true end end
if not exists then redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM') end
redis.call('SET', ARGV[3], ARGV[4], 'PX', ARGV[5])
return 1
"""

# ARGV: alive key, token, lease ms
HEARTBEAT = """
if not session_ok(ARGV[1], ARGV[2]) then return 0 end
redis.call('PEXPIRE', ARGV[1], ARGV[3])
return 1
"""

# ARGV: gid, uid, alive key, token
LEAVE = """
if not session_ok(ARGV[3], ARGV[4]) then return 0 end
redis.call('DEL', ARGV[3])
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"""

# ARGV: gid, uid, alive key, token, count; returns entries, or -1 when superseded
HELD = """
if not session_ok(ARGV[3], ARGV[4]) then return -1 end
local ids = {}
for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[5], ARGV[2])) do
  ids[#ids + 1] = p[1]
end
if #ids == 0 then return {} end
return redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))
"""

# ARGV: gid, uid, alive key, token, window, alive prefix of the group
CLAIM = """
if not session_ok(ARGV[3], ARGV[4]) then return -1 end
local gid, uid, window = ARGV[1], ARGV[2], tonumber(ARGV[5])
local free = window - #redis.call('XPENDING', KEYS[1], gid, '-', '+', window, uid)
local out = {}
if free <= 0 then return out end
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], gid)) do
  local info = fields(c)
  local name, held = info['name'], info['pending']
  if name ~= uid and redis.call('EXISTS', ARGV[6] .. name) == 0 then
    local ids = {}
    if held > 0 then
      for _, p in ipairs(redis.call('XPENDING', KEYS[1], gid, '-', '+', free, name)) do
        ids[#ids + 1] = p[1]
      end
    end
    if #ids > 0 then
      for _, e in ipairs(redis.call('XCLAIM', KEYS[1], gid, uid, 0, unpack(ids))) do
        out[#out + 1] = e
      end
      free = window - #redis.call('XPENDING', KEYS[1], gid, '-', '+', window, uid)
    end
    if #ids == held then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], gid, name) end
    if free <= 0 then return out end
  end
end
local fresh = redis.call('XREADGROUP', 'GROUP', gid, uid, 'COUNT', free, 'STREAMS', KEYS[1], '>')
if fresh then
  for _, e in ipairs(fresh[1][2]) do out[#out + 1] = e end
end
return out
"""

# ARGV: gid, ids...; returns the indexes this call committed
ACK = """
local gs = groups(KEYS[1])
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('XACK', KEYS[1], ARGV[1], id) == 1 then
    out[#out + 1] = num(id)
    local everyone = true
    for _, g in ipairs(gs) do
      if num(g['last-delivered-id']) < num(id)
        or #redis.call('XPENDING', KEYS[1], g['name'], id, id, 1) > 0 then
        everyone = false
        break
      end
    end
    if everyone then forget(KEYS[1], KEYS[3], id) end
  end
end
return out
"""

SCRIPTS = {
    name: _COMMON + body
    for name, body in {
        "put": PUT,
        "delete": DELETE,
        "truncate": TRUNCATE,
        "stats": STATS,
        "position": POSITION,
        "join": JOIN,
        "heartbeat": HEARTBEAT,
        "leave": LEAVE,
        "held": HELD,
        "claim": CLAIM,
        "ack": ACK,
    }.items()
}
