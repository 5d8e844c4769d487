// The Lua scripts of the event-id reservations (ingest/event-reservations.ts runs them; docs/dedup.md argues them).
// Every script's KEYS are hashes of ONE shard (`{r:<shard>}` hash tag), so each call runs on one Redis Cluster slot.
// Token states per shard, in field `~<token>`: `p<deadline ms>` pending, `c` confirmed, `a` aborted.

/** Ids per HMGET/HSET inside a script (Lua's unpack() accepts a few thousand values at most). */
const SLICE = 2_000;

const SPLIT = `
local ids = {}
for id in string.gmatch(ARGV[4], '[^\\n]+') do ids[#ids + 1] = id end
local n = #ids
`;

/**
 * KEYS: one shard's window hashes, the current one first. ARGV[1] token, ARGV[2] lease (ms), ARGV[3] expiry of the
 * current hash (epoch ms), ARGV[4] the identities joined by newlines (validated ids hold no control characters).
 * Returns "C" when an id is held by another token still within its lease (nothing is written), "" when every id
 * was reserved now (the common case), otherwise one character per id: "1" already stored (a confirmed token holds
 * it), "0" reserved now for ARGV[1]. Time is Redis'
 * own (TIME), so nodes' clocks do not matter for leases.
 */
export const RESERVE_SCRIPT = `${SPLIT}
local tag = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owner, at, found = {}, {}, 0
for k = 1, #KEYS do
  for from = 1, n, ${SLICE} do
    local got = redis.call('HMGET', KEYS[k], unpack(ids, from, math.min(n, from + ${SLICE} - 1)))
    for i = 1, #got do
      local j = from + i - 1
      if got[i] and not owner[j] then owner[j] = got[i]; at[j] = k; found = found + 1 end
    end
  end
end
local function hold(take)
  for from = 1, #take, ${SLICE} do
    local kv = {}
    for j = from, math.min(#take, from + ${SLICE} - 1) do kv[#kv + 1] = take[j]; kv[#kv + 1] = tag end
    redis.call('HSET', KEYS[1], unpack(kv))
  end
  redis.call('HSET', KEYS[1], '~' .. tag, 'p' .. (now + tonumber(ARGV[2])))
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
-- the common case: no id was seen before, all are reserved ("" stands for all "0")
if found == 0 then hold(ids); return '' end
local state, expired, flags, take = {}, {}, {}, {}
for j = 1, n do
  local o = owner[j]
  local s = 'a'
  if o and o ~= tag then
    local sk = o .. '@' .. at[j]
    s = state[sk]
    if not s then
      -- an id's entry and its token's state are written together in one hash, with one expiry
      s = redis.call('HGET', KEYS[at[j]], '~' .. o) or 'c'
      if string.sub(s, 1, 1) == 'p' then
        if tonumber(string.sub(s, 2)) > now then s = 'p' else s = 'a'; expired[#expired + 1] = { at[j], o } end
      end
      state[sk] = s
    end
  end
  if s == 'p' then return 'C' end
  if s == 'c' then flags[j] = '1' else flags[j] = '0'; take[#take + 1] = ids[j] end
end
for _, e in ipairs(expired) do redis.call('HSET', KEYS[e[1]], '~' .. e[2], 'a') end
if #take > 0 then hold(take) end
return table.concat(flags)
`;

/** KEYS[1]: the hash the token reserved in; ARGV[1] token. 1 when the token is (now) confirmed, 0 when it was aborted. */
export const CONFIRM_SCRIPT = `
local f = '~' .. ARGV[1]
local s = redis.call('HGET', KEYS[1], f)
if s == 'c' then return 1 end
if s and string.sub(s, 1, 1) == 'p' then redis.call('HSET', KEYS[1], f, 'c'); return 1 end
return 0
`;

/** KEYS[1]: the hash the token reserved in; ARGV[1] token, ARGV[4] identities. Gives back ids the token holds. */
export const UNRESERVE_SCRIPT = `${SPLIT}
local n2 = 0
for j = 1, n do
  if redis.call('HGET', KEYS[1], ids[j]) == ARGV[1] then n2 = n2 + redis.call('HDEL', KEYS[1], ids[j]) end
end
return n2
`;

/**
 * KEYS: one shard's window hashes; ARGV[1] tokens joined by newlines (the tokens of a WAL segment being delivered).
 * Confirms each token still pending (its lines are durable and about to be delivered) and returns those aborted.
 */
export const RESOLVE_SCRIPT = `
local aborted = {}
for tok in string.gmatch(ARGV[1], '[^\\n]+') do
  for k = 1, #KEYS do
    local f = '~' .. tok
    local s = redis.call('HGET', KEYS[k], f)
    if s then
      if s == 'a' then aborted[#aborted + 1] = tok elseif s ~= 'c' then redis.call('HSET', KEYS[k], f, 'c') end
      break
    end
  end
end
return aborted
`;
