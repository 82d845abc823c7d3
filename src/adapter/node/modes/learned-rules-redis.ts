import type { Learner } from "../../../app/proxy/learn/learner.ts";
import type { RuleChanges } from "../../../app/proxy/learn/rule-changes.ts";
import { type Rule, type RuleState, ruleId } from "../../../app/proxy/learn/rules.ts";
import { type ExchangeRules, RULES_SYNC_MS, shareChanges } from "../../../app/proxy/learn/share.ts";
import { randomId } from "../../../core/random-id.ts";
import { rateLimited, type Warner } from "../../../core/report.ts";
import { rerunning } from "../../../core/rerun.ts";
import { duplicateClient, type RedisClient } from "../../../redis/connect.ts";

// KEYS[1]: the rules hash; per rule id `h:` held, `t:` tested, `s:` last seen, `d:` an
// operator's decision. ARGV[1]: the channel, ARGV[2]: the changes' JSON, ARGV[3]: the node,
// ARGV[4]: '1' when the node holds rules, so that an empty hash (Redis restarted empty) is
// answered with nil, untouched, and the node seeds it with all it has instead.
// Adds the evidence, applies the decisions in order, tells the other nodes when anything
// changed, and answers every rule: all in one step, so no count is lost or counted twice.
const SYNC = `
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return false end
local c = cjson.decode(ARGV[2])
for _, x in ipairs(c.counts) do
  redis.call('HINCRBY', KEYS[1], 'h:' .. x[1], x[2])
  redis.call('HINCRBY', KEYS[1], 't:' .. x[1], x[3])
  local seen = tonumber(redis.call('HGET', KEYS[1], 's:' .. x[1]) or '0')
  if x[4] > seen then redis.call('HSET', KEYS[1], 's:' .. x[1], string.format('%d', x[4])) end
end
for _, d in ipairs(c.decisions) do
  if d[2] == 'forget' then
    redis.call('HDEL', KEYS[1], 'h:' .. d[1], 't:' .. d[1], 's:' .. d[1], 'd:' .. d[1])
  else
    redis.call('HSET', KEYS[1], 'd:' .. d[1], d[2])
  end
end
if #c.counts > 0 or #c.decisions > 0 then redis.call('PUBLISH', ARGV[1], ARGV[3]) end
return redis.call('HGETALL', KEYS[1])`;

export interface SharedRules {
  /** Adds this node's changes and takes the others' now (and once more if one is running). */
  sync(): Promise<void>;
  /** A last sync, then stops following. */
  close(): Promise<void>;
}

/**
 * Learned rules shared by the proxy nodes of one Redis deployment: one hash holds every
 * rule's evidence (added up from all nodes: each counts its own tests, so none is counted
 * twice) and operators' decisions (the latest wins). A node adds what it counted and takes
 * the hash as the truth on each change it makes, on each other node's notification and
 * every `RULES_SYNC_MS` (a notification can be lost with a connection). While Redis is
 * unreachable the node learns and acts on its own and keeps its changes to add later.
 */
export async function shareRules(options: {
  client: RedisClient;
  /** The deployment's key prefix. */
  prefix: string;
  learner: Learner;
  logger?: Warner;
}): Promise<SharedRules> {
  const { client, prefix, learner } = options;
  const key = `${prefix}learn:rules`;
  const channel = `${prefix}learn:changes`;
  const node = randomId();
  const report = rateLimited(options.logger ?? console, () => performance.now());

  const exchange: ExchangeRules = async (changes, holds) => {
    const reply = (await client.eval(
      SYNC,
      1,
      key,
      channel,
      payload(changes),
      node,
      holds ? "1" : "0",
    )) as string[] | null;
    return reply === null ? null : rulesOf(reply);
  };
  const once = async () => {
    try {
      await shareChanges(learner, exchange);
    } catch (err) {
      report(
        "rules",
        `[edgecache] [proxy] learned rules not shared through Redis (this node keeps learning on its own): ${String(err)}`,
      );
    }
  };
  const sync = rerunning(once);

  const subscriber = duplicateClient(client, undefined);
  subscriber.on("message", (_channel: string, from: string) => {
    if (from !== node) void sync();
  });
  subscriber.subscribe(channel).catch(() => {}); // resubscribes on reconnect
  const timer = setInterval(() => void sync(), RULES_SYNC_MS);
  timer.unref();
  await sync();
  return {
    sync,
    async close() {
      clearInterval(timer);
      await sync.settled();
      await once();
      subscriber.disconnect();
    },
  };
}

/** The changes as the script reads them: `[id, held, tested, lastSeen]`, `[id, state]`. */
function payload(changes: RuleChanges): string {
  return JSON.stringify({
    counts: changes.counts.map((c) => [ruleId(c), c.held, c.tested, c.lastSeen]),
    decisions: changes.decisions.map((d) => [ruleId(d), d.state]),
  });
}

const STATES = new Set<string>(["learned", "pinned", "rejected", "manual"]);

/** Rules from the hash's fields and values, as HGETALL answers them. */
function rulesOf(reply: string[]): Rule[] {
  const byId = new Map<string, Rule>();
  for (let i = 0; i + 1 < reply.length; i += 2) {
    const field = reply[i] as string;
    const value = reply[i + 1] as string;
    const id = field.slice(2);
    const arrow = id.indexOf(" -> ");
    if (arrow < 0) continue;
    let rule = byId.get(id);
    if (!rule) {
      rule = {
        write: id.slice(0, arrow),
        read: id.slice(arrow + 4),
        held: 0,
        tested: 0,
        lastSeen: 0,
        state: "learned",
      };
      byId.set(id, rule);
    }
    const kind = field.slice(0, 2);
    if (kind === "h:") rule.held = Number(value) || 0;
    else if (kind === "t:") rule.tested = Number(value) || 0;
    else if (kind === "s:") rule.lastSeen = Number(value) || 0;
    else if (kind === "d:" && STATES.has(value)) rule.state = value as RuleState;
  }
  return [...byId.values()];
}
