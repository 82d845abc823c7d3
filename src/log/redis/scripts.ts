import type { RedisClient } from "../../stores/redis-connect.ts";

/**
 * The Lua scripts of the Redis change log. Each runs atomically over the log's keys (all in
 * one hash slot, see `logKeys`), so every append, renewal and barrier sees one state.
 * KEYS: meta (id, head, created, stamp), stream, tables (each table's last change), nodes
 * (lease expiries), applied (each node's last applied seq), heads (the head each node saw
 * at its last renewal), turn (the write turn's token).
 */

/** The log's keys under a deployment's prefix, in the order the scripts name them, and its wake-up channel. */
export function logKeys(prefix: string): { keys: string[]; channel: string } {
  const base = `{${prefix}log}`;
  const keys = ["meta", "stream", "tables", "nodes", "applied", "heads", "turn"].map(
    (k) => `${base}:${k}`,
  );
  return { keys, channel: `${base}:wake` };
}

// Every script starts here: the log's id, made anew (with everything else emptied) when
// Redis lost it, and the server's time (one clock for every lease).
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = redis.call('HGET', KEYS[1], 'id')
if not id then
  id = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
  redis.call('HSET', KEYS[1], 'id', id, 'created', now, 'seq', 0)
end
`;

/**
 * A record, under the next gap-free seq; each table it changes remembers that seq (ARGV:
 * ops, retain, the writer's turn token or "", the wake-up channel, the writer's node,
 * tables). The record is ordered when its writer still holds the write turn, which it gives
 * back here.
 */
const APPEND = `${PRELUDE}
local ordered = '0'
if ARGV[4] ~= '' and redis.call('GET', KEYS[7]) == ARGV[4] then
  ordered = '1'
  redis.call('DEL', KEYS[7])
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'ops', ARGV[2], 'ordered', ordered, 'node', ARGV[6])
for i = 7, #ARGV do redis.call('HSET', KEYS[3], ARGV[i], seq) end
if ordered == '1' then redis.call('PUBLISH', ARGV[5], 0) end
return {id, seq, ordered}
`;

/** The log's id and head, and whether a node holds the write turn. */
const QUIET = `
return {redis.call('HGET', KEYS[1], 'id'), redis.call('HGET', KEYS[1], 'seq'), redis.call('EXISTS', KEYS[7])}
`;

/** A write turn given back unused (ARGV: its token, the wake-up channel). */
const RELEASE = `
if redis.call('GET', KEYS[7]) == ARGV[1] then
  redis.call('DEL', KEYS[7])
  redis.call('PUBLISH', ARGV[2], 0)
end
return 1
`;

/** Where a node starts: the log's id, its head, and each table's last change. */
const START = `${PRELUDE}
if ARGV[2] ~= '' and redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf') == 0
    and redis.call('HGET', KEYS[1], 'stamp') ~= ARGV[2] then
  -- The source changed while no node followed the log (or the last one did not leave
  -- cleanly): nothing cached before can be checked. One record invalidates it all.
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'ops', '[{"prefix":""}]')
  redis.call('HSET', KEYS[3], '', seq)
end
return {id, redis.call('HGET', KEYS[1], 'seq'), redis.call('HGETALL', KEYS[3])}
`;

/**
 * The log went back (Redis restored an older snapshot, or a replica that lagged took
 * over): its positions no longer mean what the nodes applied. It becomes a new log, which
 * every node notices at its next renewal and starts over from.
 */
const RESEAL_BODY = `
  id = ARGV[1]
  redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
  redis.call('HSET', KEYS[1], 'id', id, 'created', now)
`;

/** A writer whose record got a seq it had already applied: RESEAL_BODY, once. */
const RESEAL = `${PRELUDE}
if id == ARGV[2] then
${RESEAL_BODY}
end
return id
`;

/**
 * A node reports what it applied and renews its lease (ARGV: node, applied, lease, the
 * log it follows, the wake-up channel). A member stays one while it keeps up (it applied
 * what the log held at its previous renewal); a node that is not a member joins only when
 * it has applied the whole log, since writes were acknowledged without it.
 */
const RENEW_BODY = `
local head = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local granted = 0
if id == ARGV[5] and tonumber(ARGV[3]) > head then
${RESEAL_BODY}
end
if id == ARGV[5] then
  local applied = tonumber(ARGV[3])
  local expiry = redis.call('ZSCORE', KEYS[4], ARGV[2])
  local member = expiry and tonumber(expiry) > now
  local previous = tonumber(redis.call('HGET', KEYS[6], ARGV[2]) or '0')
  if (member and applied >= previous) or ((not member) and applied >= head) then
    redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), ARGV[2])
    granted = 1
  end
  redis.call('HSET', KEYS[5], ARGV[2], applied)
  redis.call('HSET', KEYS[6], ARGV[2], head)
  redis.call('PUBLISH', ARGV[6], applied)
end
local members = redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf')
`;

const RENEW = `${PRELUDE}${RENEW_BODY}
return {id, head, granted, members}
`;

/**
 * A writer renews (as RENEW) and asks whether its record (ARGV: seq, its log) may be
 * acknowledged: every member has applied it (a node whose lease ran out no longer serves
 * from cache), and a new log is older than a lease (nodes of the old one may still serve
 * until they notice). Returns RENEW's answer, then {members behind, ms to wait at most}.
 */
const BARRIER = `${PRELUDE}${RENEW_BODY}
local wait = tonumber(redis.call('HGET', KEYS[1], 'created')) + tonumber(ARGV[4]) - now
local behind = 0
if id == ARGV[8] then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  local members = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local applied = tonumber(redis.call('HGET', KEYS[5], members[i]) or '0')
    if applied < tonumber(ARGV[7]) then
      behind = behind + 1
      wait = math.max(wait, tonumber(members[i + 1]) - now)
    end
  end
end
return {id, head, granted, members, behind, math.max(wait, 0)}
`;

/** A node leaves; the last to leave keeps the source's stamp for START to compare. */
const LEAVE = `${PRELUDE}
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'stamp', ARGV[3]) end
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[2])
redis.call('HDEL', KEYS[6], ARGV[2])
return 1
`;

export type Script =
  | "ecAppend"
  | "ecStart"
  | "ecRenew"
  | "ecBarrier"
  | "ecLeave"
  | "ecReseal"
  | "ecRelease"
  | "ecQuiet";
export type ScriptClient = RedisClient &
  Record<Script, (...args: (string | number)[]) => Promise<unknown>>;

/** Defines the scripts as commands of `client` (once: clients are shared), over `keys`. */
export function withScripts(client: RedisClient, keys: number): ScriptClient {
  const scripts: [Script, string][] = [
    ["ecAppend", APPEND],
    ["ecStart", START],
    ["ecRenew", RENEW],
    ["ecBarrier", BARRIER],
    ["ecLeave", LEAVE],
    ["ecReseal", RESEAL],
    ["ecRelease", RELEASE],
    ["ecQuiet", QUIET],
  ];
  const c = client as ScriptClient;
  for (const [name, lua] of scripts) {
    if (typeof c[name] !== "function") c.defineCommand(name, { numberOfKeys: keys, lua });
  }
  return c;
}
