import { createHash } from "node:crypto";
import type { RedisClient } from "../../redis/connect.ts";

/**
 * The Lua scripts of the Redis change log. Each runs atomically over the log's keys (all in
 * one hash slot, see `logKeys`), so every append, renewal and barrier sees one state.
 * KEYS: meta (id, head, created, stamp, last mark), stream, tables (each table's last
 * change), nodes (lease expiries), applied (each node's last applied seq), heads (the head
 * each node saw at its last renewal), turns (the write turns held, by expiry), history (a
 * node's summary of the log up to a seq, for nodes that start later: see history.ts).
 * APPEND also pushes to the members' bells (bellKey), named from KEYS[1] and so in the same
 * hash slot, though not among the declared keys.
 */

/** The log's keys under a deployment's prefix, in the order the scripts name them, and its wake-up channel. */
export function logKeys(prefix: string): { keys: string[]; channel: string } {
  const base = `{${prefix}log}`;
  const keys = ["meta", "stream", "tables", "nodes", "applied", "heads", "turns", "history"].map(
    (k) => `${base}:${k}`,
  );
  return { keys, channel: `${base}:wake` };
}

/** A bell outlives its last ring by this many leases (a node that left leaves none behind). */
export const BELL_LEASES = 4;

/**
 * A node's doorbell: a list that APPEND pushes to (one element at most) for every member
 * but the record's writer. A node alone on the log waits on its bell (BLPOP) instead of on
 * the stream, so its own appends do not wake its reader, and the first record another node
 * appends does. The Lua side names it from the meta key, in APPEND: keep the two alike.
 */
export function bellKey(keys: readonly string[], node: string): string {
  return `${keys[0]!.slice(0, -"meta".length)}bell:${node}`;
}

/**
 * What the wake-up channel carries: `a <log> <seq> <node>` when a node reports it applied
 * the log up to seq (an acknowledgement); `l <log> <node>` when a node leaves (it serves
 * nothing from cache any more, as if it had applied everything). Pub/sub only wakes: a
 * message lost costs a writer time (it asks Redis instead), never a stale read.
 */
const ACK = "a";
const LEFT = "l";
/** The most records one acknowledgement looks up to tell their writers (see RENEW). */
const ACK_SPAN = 64;

/**
 * The channel a node hears acknowledgements of its own records on. A node applies every
 * record, but only a record's writer waits for the others to: told on a channel of its
 * own, the other nodes are not woken for it (a node idle between requests pays about a
 * hit's CPU for each reply that wakes it). Departures, and acknowledgements whose records'
 * writers are not known, go to `channel`, which every node hears too.
 */
export function wakeChannel(channel: string, node: string): string {
  return `${channel}:${node}`;
}

/** An acknowledgement (or a departure) heard on the wake-up channel; undefined for anything else. */
export function parseAck(message: string): { log: string; seq: number; node: string } | undefined {
  const [kind, log, ...rest] = message.split(" ");
  if (log === undefined) return undefined;
  if (kind === LEFT && rest.length > 0) {
    return { log, seq: Number.POSITIVE_INFINITY, node: rest.join(" ") };
  }
  const [seq, ...node] = rest;
  if (kind !== ACK || node.length === 0 || !Number.isInteger(Number(seq))) return undefined;
  return { log, seq: Number(seq), node: node.join(" ") };
}

/**
 * What a claim's winner publishes to each node awaiting it (see CLAIM): `r <name>`, on the
 * node's own wake-up channel.
 */
const FINISHED = "r";

/** The name of a finished claim heard on the wake-up channel; undefined for anything else. */
export function parseFinished(message: string): string | undefined {
  return message.startsWith(`${FINISHED} `) ? message.slice(FINISHED.length + 1) : undefined;
}

/**
 * Where the claim named `name` is kept: its part before the first ':' (a record's seq, or
 * "history") is the key's hash tag, so that the claims of one record share a hash slot and
 * go to Redis in one command (CLAIM, FINISH), even on a Redis Cluster; records spread.
 */
export function claimKey(prefix: string, name: string): string {
  const group = claimGroup(name);
  return `${prefix}claim:{${group}}${name.slice(group.length)}`;
}

/** A claim's hash tag (see claimKey): claims of one group go to Redis in one command. */
export function claimGroup(name: string): string {
  const colon = name.indexOf(":");
  return colon < 0 ? name : name.slice(0, colon);
}

/**
 * Claims of work one node does for all (KEYS: the claims, all in one hash slot; ARGV: node,
 * lease, then for each claim "1" if the node waits for the winner's work when it loses).
 * Each a hash: who won it, the nodes awaiting it (w:<node>) and whether it is done. Returns
 * for each 1: won; 0: lost (and, waiting, registered); 2: lost, and the work is done already.
 */
const CLAIM = `
local out = {}
for i = 1, #KEYS do
  if redis.call('HSETNX', KEYS[i], 'by', ARGV[1]) == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    out[i] = 1
  elseif redis.call('HEXISTS', KEYS[i], 'done') == 1 then
    out[i] = 2
  else
    if ARGV[2 + i] == '1' then redis.call('HSET', KEYS[i], 'w:' .. ARGV[1], '') end
    out[i] = 0
  end
end
return out
`;

/**
 * The winner's work of claims is done (KEYS: the claims, in one hash slot; ARGV: the wake-up
 * channel, then each claim's name): each node awaiting one is told on its own channel, and
 * later claimers learn it from CLAIM. A claim gone (past its lease) tells nobody: its
 * waiters gave up already.
 */
const FINISH = `
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], 'done', '1')
    for _, field in ipairs(redis.call('HKEYS', KEYS[i])) do
      if string.sub(field, 1, 2) == 'w:' then
        redis.call('PUBLISH', ARGV[1] .. ':' .. string.sub(field, 3), '${FINISHED} ' .. ARGV[1 + i])
        redis.call('HDEL', KEYS[i], field)
      end
    end
  end
end
return 1
`;

// Every script starts here: the log's id, made anew (with everything else emptied) when
// Redis lost it, and the server's time (one clock for every lease).
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = redis.call('HGET', KEYS[1], 'id')
if not id then
  id = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
  redis.call('HSET', KEYS[1], 'id', id, 'created', now, 'seq', 0)
end
`;

/**
 * The members (nodes holding a lease) that have not applied record `seq`, as
 * {node, ms its lease has left, ...}, and the ms until the log is a lease old: what a
 * writer waits for before it acknowledges (see BARRIER). Expired members are dropped.
 */
const BEHIND = `
local function behind(seq, lease)
  local young = tonumber(redis.call('HGET', KEYS[1], 'created')) + lease - now
  local out = {}
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  local members = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    if tonumber(redis.call('HGET', KEYS[5], members[i]) or '0') < seq then
      out[#out + 1] = members[i]
      out[#out + 1] = tonumber(members[i + 1]) - now
    end
  end
  return math.max(young, 0), out
end
`;

/**
 * The most records an append's reply brings its writer from before its own (see APPEND);
 * a writer further behind reads them itself.
 */
export const APPEND_CATCH_UP = 32;

/**
 * A record, under the next gap-free seq; each table it changes remembers that seq (ARGV:
 * its mark, ops, retain, the writer's turn or "", the wake-up channel, the writer's node,
 * the lease, a token for the writer's next turn or "", the log the writer follows and the
 * last seq it applied there, tables). The record is ordered when its writer still holds its turn (TURN)
 * and none of its tables changed since the head the turn was taken at: then every record
 * on those tables before it was committed before its write began, and none after it was
 * (each of those took its turn after this one was appended, or is unordered itself). The
 * turn is given back here. It carries its mark and the mark of the record before it
 * (`prev`), and the meta hash keeps the last mark: a node that applied another record
 * under a seq (the log went back and reused it) tells by the marks, not by the seq.
 * Returns the record's place, the previous mark, the writer's next turn (taken at this
 * record, as TURN would take it right after: its next write then pays no round trip for
 * one; "" when not asked for), in the same round trip who the writer must hear from
 * before it acknowledges (BEHIND): every member, since none has read the record yet (each
 * but the writer has its bell rung: see bellKey), and the records between the last one the
 * writer applied and its own, as XRANGE gives them, where they are few (APPEND_CATCH_UP)
 * and the writer follows this log: its node applies them with its own without asking for
 * them (its reader had not brought them yet).
 */
const APPEND = `${PRELUDE}${BEHIND}
local ordered = '0'
if ARGV[4] ~= '' then
  local held = redis.call('ZSCORE', KEYS[7], ARGV[4])
  if held and tonumber(held) > now then
    ordered = '1'
    local since = tonumber(string.match(ARGV[4], '^%d+'))
    for i = 11, #ARGV do
      if tonumber(redis.call('HGET', KEYS[3], ARGV[i]) or '0') > since then ordered = '0' end
    end
  end
  redis.call('ZREM', KEYS[7], ARGV[4])
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local prev = redis.call('HGET', KEYS[1], 'last') or ''
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'ops', ARGV[2], 'ordered', ordered, 'node', ARGV[6], 'mark', ARGV[1], 'prev', prev)
redis.call('HSET', KEYS[1], 'last', ARGV[1])
for i = 11, #ARGV do redis.call('HSET', KEYS[3], ARGV[i], seq) end
local nextTurn = ''
if ARGV[8] ~= '' then
  nextTurn = seq .. ' ' .. ARGV[8]
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
  redis.call('ZADD', KEYS[7], now + tonumber(ARGV[7]), nextTurn)
end
local young, waiting = behind(seq, tonumber(ARGV[7]))
-- Rings every other member's bell (bellKey): one alone waits there, not on the stream. The
-- record is in by now: a bell that cannot be rung (a Cluster moving the slot's keys) only
-- leaves its node to wake at its next renewal, which the barrier waits for.
for i = 1, #waiting, 2 do
  if waiting[i] ~= ARGV[6] then
    local bell = string.sub(KEYS[1], 1, -5) .. 'bell:' .. waiting[i]
    redis.pcall('LPUSH', bell, seq)
    redis.pcall('LTRIM', bell, 0, 0)
    redis.pcall('PEXPIRE', bell, ${BELL_LEASES} * tonumber(ARGV[7]))
  end
end
local missed = {}
local have = tonumber(ARGV[10] or '')
if ARGV[9] == id and have and have < seq - 1 and seq - 1 - have <= ${APPEND_CATCH_UP} then
  missed = redis.call('XRANGE', KEYS[2], (have + 1) .. '-0', (seq - 1) .. '-0')
end
return {id, seq, ordered, prev, nextTurn, young, waiting, missed}
`;

/**
 * A write turn, held from before a write's statement until its record is appended, for a
 * lease at most (ARGV: a new log's id, the writer's token, the lease). Turns do not exclude
 * each other: a writer never waits for another's. Returns the turn (the head it was taken
 * at, then the token: APPEND reads the head back from it) and the log's id.
 */
const TURN = `${PRELUDE}
local turn = redis.call('HGET', KEYS[1], 'seq') .. ' ' .. ARGV[2]
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
redis.call('ZADD', KEYS[7], now + tonumber(ARGV[3]), turn)
return {id, turn}
`;

/** The log's id and head, and how many write turns are held. */
const QUIET = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {redis.call('HGET', KEYS[1], 'id'), redis.call('HGET', KEYS[1], 'seq'), redis.call('ZCOUNT', KEYS[7], '(' .. now, '+inf')}
`;

/** A write turn given back unused (ARGV: the turn). */
const RELEASE = `
redis.call('ZREM', KEYS[7], ARGV[1])
return 1
`;

/**
 * Where a node starts: the log's id, its head, each table's last change, the last mark, and
 * the log's history (ARGV: a new log's id, the source's stamp, retain): the summary a node
 * saved (its log, the seq it ends at, the text; none when it is another log's) and the
 * records after that seq up to the head, read in the same step so none is trimmed between.
 * They are read only where the stream may still hold them all (no more than it retains);
 * the node checks that none is missing.
 */
const START = `${PRELUDE}
if ARGV[2] ~= '' and redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf') == 0
    and redis.call('HGET', KEYS[1], 'stamp') ~= ARGV[2] then
  -- The source changed while no node followed the log (or the last one did not leave
  -- cleanly): nothing cached before can be checked. One record invalidates it all.
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  local prev = redis.call('HGET', KEYS[1], 'last') or ''
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'ops', '[{"prefix":""}]', 'mark', ARGV[1], 'prev', prev)
  redis.call('HSET', KEYS[1], 'last', ARGV[1])
  redis.call('HSET', KEYS[3], '', seq)
end
local head = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local saved = redis.call('HMGET', KEYS[8], 'log', 'from', 'summary')
local records = {}
if saved[1] == id then
  local from = tonumber(saved[2])
  if from < head and head - from <= tonumber(ARGV[3]) then
    records = redis.call('XRANGE', KEYS[2], (from + 1) .. '-0', head .. '-0')
  end
else
  saved = {}
end
return {id, redis.call('HGET', KEYS[1], 'seq'), redis.call('HGETALL', KEYS[3]), redis.call('HGET', KEYS[1], 'last') or '', saved, records}
`;

/**
 * A node's summary of the log up to seq `from` (ARGV: log, from, text), kept unless the log
 * is another, `from` is past the head (the log went back), or the summary kept is as recent:
 * nodes that save at once leave the latest.
 */
const KEEP_HISTORY = `
local id = redis.call('HGET', KEYS[1], 'id')
local from = tonumber(ARGV[2])
if id ~= ARGV[1] or from > tonumber(redis.call('HGET', KEYS[1], 'seq')) then return 0 end
local saved = redis.call('HMGET', KEYS[8], 'log', 'from')
if saved[1] == id and tonumber(saved[2]) >= from then return 0 end
redis.call('HSET', KEYS[8], 'log', id, 'from', from, 'summary', ARGV[3])
return 1
`;

/**
 * The log went back (Redis restored an older snapshot, or a replica that lagged took
 * over): its positions no longer mean what the nodes applied. It becomes a new log, which
 * every node notices at its next renewal and starts over from; the history of the old one
 * goes.
 */
const RESEAL_BODY = `
  id = ARGV[1]
  redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
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
 * log it follows, the wake-up channel, the mark of the record it applied last or ""). A
 * node ahead of the head, or whose last record has another mark in the log, saw records
 * the log lost: the log went back, and is resealed. A member stays one while it keeps up (it applied
 * what the log held at its previous renewal); a node that is not a member joins only when
 * it has applied the whole log, since writes were acknowledged without it. A position that
 * moved on is published (see `ack`): the writers waiting for it go on without asking.
 */
const RENEW_BODY = `
local head = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local granted = 0
-- The mark of the record under the node's position, as the log holds it ('' if unknown:
-- trimmed, or appended without one).
local function markAt(seq)
  if seq == head then return redis.call('HGET', KEYS[1], 'last') or '' end
  local entry = redis.call('XRANGE', KEYS[2], seq .. '-0', seq .. '-0')[1]
  if not entry then return '' end
  for i = 1, #entry[2], 2 do
    if entry[2][i] == 'mark' then return entry[2][i + 1] end
  end
  return ''
end
if id == ARGV[5] and (tonumber(ARGV[3]) > head or (ARGV[7] ~= '' and tonumber(ARGV[3]) > 0
    and markAt(tonumber(ARGV[3])) ~= '' and markAt(tonumber(ARGV[3])) ~= ARGV[7])) then
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
  local before = tonumber(redis.call('HGET', KEYS[5], ARGV[2]) or '-1')
  redis.call('HSET', KEYS[5], ARGV[2], applied)
  redis.call('HSET', KEYS[6], ARGV[2], head)
  if applied ~= before then
    local message = '${ACK} ' .. id .. ' ' .. applied .. ' ' .. ARGV[2]
    -- To the writers of the records applied since the node's last report, each on its own
    -- channel (see wakeChannel): only they wait for it. Where those records cannot all be
    -- read (the first report, a long stretch, trimmed), to every node.
    local span = applied - before
    local records = before >= 0 and span > 0 and span <= ${ACK_SPAN}
      and redis.call('XRANGE', KEYS[2], (before + 1) .. '-0', applied .. '-0') or {}
    if #records == span then
      local told = {}
      for _, record in ipairs(records) do
        local fields = record[2]
        for i = 1, #fields, 2 do
          local writer = fields[i] == 'node' and fields[i + 1]
          if writer and writer ~= ARGV[2] and not told[writer] then
            told[writer] = true
            redis.call('PUBLISH', ARGV[6] .. ':' .. writer, message)
          end
        end
      end
    else
      redis.call('PUBLISH', ARGV[6], message)
    end
  end
end
local members = redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf')
`;

const RENEW = `${PRELUDE}${RENEW_BODY}
return {id, head, granted, members}
`;

/**
 * A writer renews (as RENEW) and asks who it still waits for before its record (ARGV: seq,
 * its log) may be acknowledged: every member has applied it (a node whose lease ran out no
 * longer serves from cache), and a new log is older than a lease (nodes of the old one may
 * still serve until they notice). Returns RENEW's answer, then BEHIND's (nobody, for a
 * record of a log that is gone).
 */
const BARRIER = `${PRELUDE}${RENEW_BODY}${BEHIND}
local young, waiting = behind(tonumber(ARGV[8]), tonumber(ARGV[4]))
if id ~= ARGV[9] then waiting = {} end
return {id, head, granted, members, young, waiting}
`;

/**
 * A node leaves (ARGV: node, stamp, the wake-up channel); the last to leave keeps the
 * source's stamp for START to compare. Writers waiting for it stop at once.
 */
const LEAVE = `${PRELUDE}
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'stamp', ARGV[3]) end
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[2])
redis.call('HDEL', KEYS[6], ARGV[2])
redis.call('PUBLISH', ARGV[4], '${LEFT} ' .. id .. ' ' .. ARGV[2])
return 1
`;

const SOURCES = {
  ecAppend: APPEND,
  ecTurn: TURN,
  ecStart: START,
  ecRenew: RENEW,
  ecBarrier: BARRIER,
  ecLeave: LEAVE,
  ecReseal: RESEAL,
  ecRelease: RELEASE,
  ecQuiet: QUIET,
  ecKeepHistory: KEEP_HISTORY,
};
export type Script = keyof typeof SOURCES;

/**
 * A script's SHA1, for EVALSHA sent by hand (in a pipeline: ioredis defines every script
 * anew on each pipeline, and one defined anew sends its whole body with EVAL).
 */
export function scriptSha(name: Script): string {
  return createHash("sha1").update(SOURCES[name]).digest("hex");
}
/** The scripts' command names. */
export const SCRIPTS = Object.keys(SOURCES) as Script[];
export type ScriptClient = RedisClient &
  Record<Script, (...args: (string | number)[]) => Promise<unknown>>;

/** The claims' scripts: keys counted by the caller, outside the log's hash slot (claims are many). */
const CLAIM_SOURCES = { ecClaim: CLAIM, ecFinish: FINISH };
type ClaimScript = keyof typeof CLAIM_SOURCES;

/** Defines the scripts as commands of `client` (once: clients are shared), over `keys`. */
export function withScripts(
  client: RedisClient,
  keys: number,
): ScriptClient & Record<ClaimScript, (...args: (string | number)[]) => Promise<unknown>> {
  const c = client as ScriptClient &
    Record<ClaimScript, (...args: (string | number)[]) => Promise<unknown>>;
  // Without a number of keys, the first argument gives it (CLAIM, FINISH: one per claim).
  const define = (name: string, numberOfKeys: number | undefined, lua: string) => {
    if (typeof (c as unknown as Record<string, unknown>)[name] !== "function") {
      c.defineCommand(name, { numberOfKeys, lua });
    }
  };
  for (const name of SCRIPTS) define(name, keys, SOURCES[name]);
  for (const [name, lua] of Object.entries(CLAIM_SOURCES)) define(name, undefined, lua);
  return c;
}
