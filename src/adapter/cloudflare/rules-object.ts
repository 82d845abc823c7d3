import type { Learner } from "../../app/proxy/learn/learner.ts";
import { addChanges, type RuleChanges } from "../../app/proxy/learn/rule-changes.ts";
import { type Rule, type RuleState, ruleId } from "../../app/proxy/learn/rules.ts";
import {
  type ExchangeRules,
  RULES_SYNC_MS,
  type Sharing,
  shareChanges,
} from "../../app/proxy/learn/share.ts";
import { EdgecacheError } from "../../core/errors.ts";
import { rateLimited, type Warner } from "../../core/report.ts";
import { rerunning } from "../../core/rerun.ts";
import { callObject, type DurableObjectNamespaceLike } from "../../durable/rpc.ts";

/**
 * Learned rules shared by the isolates of a proxy Worker, as Redis shares them between
 * Node proxies (src/adapter/node/modes/learned-rules-redis.ts): one Durable Object holds
 * every rule's evidence (added up from every isolate, each sending only what it counted)
 * and operators' decisions (the latest wins). It is an object of its own name in the
 * change log's namespace (`<log name>:rules`, hosted by `ChangeLogObject`), so learning
 * needs no binding of its own, and the log's object is not loaded with it.
 */

/** The rules object's name for a change log's name. */
export function rulesObjectName(logName = "edgecache"): string {
  return `${logName}:rules`;
}

/** What the rules object uses of its storage (a Durable Object's). */
export interface RulesStorageLike {
  list<T>(options: { prefix: string }): Promise<Map<string, T>>;
  put(entries: Record<string, unknown>): Promise<void>;
  delete(keys: string[]): Promise<number>;
}

/** Keys one `put` or `delete` of a Durable Object's storage takes at most. */
export const DURABLE_OBJECT_MAX_KEYS_PER_CALL = 128;
const PREFIX = "rule:";
const STATES = new Set<string>(["learned", "pinned", "rejected", "manual"]);

/**
 * The object's side: `sync` adds an isolate's changes and answers every rule, in one step.
 * A Durable Object runs one request's storage calls before it takes the next (its input
 * gate), and answers only once they are stored (its output gate): no count is lost or
 * added twice, and a decision answered is one every later sync sees. Each rule is a key
 * of its own (`rule:<id>`), so a sync writes only the rules it changed.
 */
export class RulesHost {
  #storage: RulesStorageLike;
  #rules: Promise<Map<string, Rule>> | undefined;

  constructor(storage: RulesStorageLike) {
    this.#storage = storage;
  }

  async handle(op: string, body: Record<string, unknown>): Promise<Response> {
    if (op !== "sync") return Response.json({ error: `no rules op ${op}` }, { status: 404 });
    this.#rules ??= this.#load();
    const rules = await this.#rules;
    // An isolate that holds rules, meeting an object that holds none: it seeds it.
    if (body.holds === true && rules.size === 0) return Response.json({ rules: null });
    const { changed, removed } = addChanges(rules, changesOf(body.changes));
    try {
      // Issued together, not one after another: a Durable Object coalesces writes made
      // without an await between them into one atomic batch, so a failure stores none.
      const writes: Promise<unknown>[] = [];
      const puts = [...changed].map((id) => [PREFIX + id, rules.get(id)] as const);
      for (let i = 0; i < puts.length; i += DURABLE_OBJECT_MAX_KEYS_PER_CALL) {
        writes.push(
          this.#storage.put(
            Object.fromEntries(puts.slice(i, i + DURABLE_OBJECT_MAX_KEYS_PER_CALL)),
          ),
        );
      }
      const gone = [...removed].map((id) => PREFIX + id);
      for (let i = 0; i < gone.length; i += DURABLE_OBJECT_MAX_KEYS_PER_CALL) {
        writes.push(this.#storage.delete(gone.slice(i, i + DURABLE_OBJECT_MAX_KEYS_PER_CALL)));
      }
      await Promise.all(writes);
    } catch (err) {
      // Not stored: memory is read again from storage, and the isolate keeps its changes.
      this.#rules = undefined;
      throw err;
    }
    return Response.json({ rules: [...rules.values()] });
  }

  async #load(): Promise<Map<string, Rule>> {
    const stored = await this.#storage.list<Rule>({ prefix: PREFIX });
    const rules = new Map<string, Rule>();
    for (const rule of stored.values()) rules.set(ruleId(rule), rule);
    return rules;
  }
}

/** An isolate's changes as sent; anything malformed is left out. */
function changesOf(value: unknown): RuleChanges {
  const v = (value ?? {}) as Partial<Record<keyof RuleChanges, unknown>>;
  const list = (x: unknown) => (Array.isArray(x) ? (x as Record<string, unknown>[]) : []);
  const named = (x: Record<string, unknown>) =>
    typeof x.write === "string" && typeof x.read === "string";
  const count = (n: unknown) => (typeof n === "number" && Number.isFinite(n) ? n : 0);
  return {
    counts: list(v.counts)
      .filter(named)
      .map((c) => ({
        write: c.write as string,
        read: c.read as string,
        held: count(c.held),
        tested: count(c.tested),
        lastSeen: count(c.lastSeen),
      })),
    decisions: list(v.decisions)
      .filter((d) => named(d) && (d.state === "forget" || STATES.has(d.state as string)))
      .map((d) => ({
        write: d.write as string,
        read: d.read as string,
        state: d.state as RuleState | "forget",
      })),
  };
}

/**
 * An isolate's side. It syncs (adds what it counted and decided, takes every rule) after
 * each of its changes and at most every `RULES_SYNC_MS` on requests, in the background;
 * before a write's rules are applied it makes sure its rules come from a sync begun within
 * `RULES_SYNC_MS` (the wait runs beside the write's origin request). An operator's decision
 * is answered once the object stored it and `RULES_SYNC_MS` more has passed, so every
 * isolate's next write acts on it. While the object is unreachable the isolate learns and
 * acts alone, and keeps its changes to add later.
 */
export class IsolateRules implements Sharing {
  readonly sync: (() => Promise<void>) & { settled(): Promise<void> };
  #background: { add(work: Promise<unknown>): void };
  /** When the latest sync that reached the object began (Date.now). */
  #current = Number.NEGATIVE_INFINITY;
  /** When the latest sync began, and whether it reached the object. */
  #attempt = Number.NEGATIVE_INFINITY;
  #reached = true;

  constructor(options: {
    namespace: DurableObjectNamespaceLike;
    /** The change log's name: the rules object is `<name>:rules`. */
    logName?: string;
    learner: Learner;
    logger: Warner;
    /** Where syncs run off the request's path (`ctx.waitUntil`, see background.ts). */
    background: { add(work: Promise<unknown>): void };
  }) {
    this.#background = options.background;
    const name = rulesObjectName(options.logName);
    const exchange: ExchangeRules = async (changes, holds) =>
      (
        await callObject<{ rules: Rule[] | null }>(
          options.namespace,
          name,
          "rules/sync",
          { changes, holds },
          { component: "learned-rules", unavailable: "E_STORE_UNAVAILABLE" },
        )
      ).rules;
    const report = rateLimited(options.logger, Date.now);
    this.sync = rerunning(async () => {
      const began = Date.now();
      this.#attempt = began;
      try {
        await shareChanges(options.learner, exchange);
        this.#current = began;
        this.#reached = true;
      } catch (err) {
        this.#reached = false;
        report(
          "rules",
          `[edgecache] [proxy-worker] learned rules not shared through the Durable Object (this isolate keeps learning on its own): ${String(err)}`,
        );
      }
    });
  }

  /** A sync in the background when none began within `RULES_SYNC_MS` (each request asks). */
  tick(): void {
    if (Date.now() - this.#attempt >= RULES_SYNC_MS) this.changed();
  }

  /** After any change of the isolate's: a sync in the background. */
  changed(): void {
    this.#background.add(this.sync());
  }

  /**
   * Before a write's rules are applied: rules from a sync begun within `RULES_SYNC_MS`, or a
   * sync now. While the object is unreachable (the latest sync failed, within that time)
   * the isolate's own rules do.
   */
  async current(): Promise<void> {
    const now = Date.now();
    if (now - this.#current < RULES_SYNC_MS) return;
    if (!this.#reached && now - this.#attempt < RULES_SYNC_MS) return;
    await this.sync();
  }

  /**
   * After an operator's decision, before it is answered: stored in the object, then
   * `RULES_SYNC_MS` more, past which every isolate's write syncs before acting (see
   * `current`). Throws when the object cannot be reached: the isolate acts on the decision
   * and adds it on a later sync, but no other isolate knows it yet.
   */
  async decided(): Promise<void> {
    await this.sync();
    if (!this.#reached) {
      throw new EdgecacheError(
        "E_STORE_UNAVAILABLE",
        "proxy-worker",
        "the decision is not stored in the rules Durable Object, which cannot be reached: this isolate acts on it and adds it on a later sync; send it again to be sure",
      );
    }
    // A little past the interval: an isolate's clock reads the time of its latest I/O.
    await new Promise((resolve) => setTimeout(resolve, RULES_SYNC_MS + DECISION_MARGIN_MS));
  }
}

const DECISION_MARGIN_MS = 50;
