import type { CaptureFeed } from "../../core/capture-feed.ts";
import type { ChangeOp } from "../../core/change-log/contract.ts";
import { rerunning } from "../../core/rerun.ts";
import { CAPTURE_ALARM_LEASE } from "../../core/time/lease.ts";
import type { D1DatabaseLike } from "../../database/d1/binding.ts";
import { d1CaptureFeed } from "../../database/d1/change-table.ts";
import { objectLogger } from "./logger.ts";
import { captureIntervalMs } from "./variables.ts";

/**
 * D1 change capture on Workers: the change log's Durable Object drains D1's change table
 * (the triggers of `edgecache capture install --d1`, see src/database/d1/change-table.ts) into
 * the log, so a write made with `wrangler d1 execute`, the dashboard or another Worker
 * invalidates like the data API's own. The object runs one drain at a time (a drain asked
 * for while one runs runs once more after it), which is what keeps the change table's
 * order: read a batch, append it as one record, and only then delete its rows, so a crash
 * in between appends it twice (harmless), never loses it.
 *
 * When it drains:
 * - after each append (a write through a Worker): the changes of other writers since;
 * - on the object's alarm, every `intervalMs` while isolates call the object, stopping
 *   after IDLE_MS without a call (an idle Worker costs nothing);
 * - before answering a sync when the last drain began more than two intervals ago (the
 *   first request after a quiet spell), so a read never waits longer than that for a
 *   write made around edgecache.
 */

/**
 * The alarm's default interval, ms. Chosen by cost: an empty drain is one D1 query that
 * reads about one row, and each alarm is one Durable Object request. At 1 s, a Worker busy
 * around the clock makes 2.6 million of each a month: about 0.01% of the 25 billion rows
 * read D1's paid plan includes, and 1.6 million requests beyond the million included
 * ($0.15 a million: about $0.24). Override with `EDGECACHE_CAPTURE_MS` (0 turns it off).
 */
export const CAPTURE_INTERVAL_MS = 1000;
/** The alarm stops after this long without a call from an isolate, ms. */
const IDLE_MS = CAPTURE_ALARM_LEASE.ms;
/** Changes appended per record. */
const BATCH = 500;
/** Capture lags kept for the percentiles. */
const LAG_SAMPLES = 4096;

/** The part of a Durable Object's storage the drain uses (no Cloudflare type). */
export interface AlarmStorageLike {
  setAlarm(scheduledTime: number): Promise<void>;
}

/** The bindings and variables the drain reads from the object's `env`. */
export interface CaptureEnv {
  /** The D1 database whose change table is drained (the data API Worker's `DB`). */
  DB?: D1DatabaseLike;
  /** The alarm's interval, ms (CAPTURE_INTERVAL_MS); "0" turns draining off. */
  EDGECACHE_CAPTURE_MS?: string;
  /** The Worker's log level: `silent` quiets the drain's warnings. */
  EDGECACHE_LOG_LEVEL?: string;
}

export interface CaptureDrainStats {
  /** Changes appended to the log so far. */
  applied: number;
  /** From the database's record of a change to its record in the log, ms. */
  lagP50: number | undefined;
  lagP99: number | undefined;
  intervalMs: number;
  /**
   * The last drain failed (the database out of reach): changes committed before it may not
   * be in the log, so an isolate asking for a drain is told it cannot count on one.
   */
  failed?: true;
}

/**
 * What the drain uses of the log it feeds, in the same object (`ChangeLogHost` has all): the
 * mark that tells whether a write appended meanwhile, the append of captured changes, and the
 * drain's own mark kept in the log's storage, so that a restarted object knows it.
 */
export interface CapturedLog {
  /** Resolves once the log is read from storage. */
  ready(): Promise<void>;
  appendMark(): number;
  turnHeld(): boolean;
  appendCaptured(ops: readonly ChangeOp[], ordered?: boolean, bookmark?: string): Promise<number>;
  drainMark(): number | undefined;
  keepDrainMark(mark: number): Promise<void>;
}

/**
 * A change table the object drains, made from its env, and the database's name for its
 * warnings; undefined when the env has none. D1's (`DB`) unless the object's class says
 * otherwise (see postgres-drain.ts).
 */
export type DrainedTable = (env: CaptureEnv) => { feed: DrainedFeed; database: string } | undefined;

/** D1's change table, behind the `DB` binding. */
export const d1ChangeTable: DrainedTable = (env) =>
  typeof env.DB?.prepare === "function"
    ? { feed: d1CaptureFeed(env.DB), database: "D1" }
    : undefined;

/**
 * The change table of the D1 database bound as `binding` (a tenant's `DB_SHOP`, named by the
 * isolates' calls: see `LogObject`); undefined when the env has no such D1 binding.
 */
export function d1TableOf(binding: string): DrainedTable {
  return (env) => {
    const database = (env as Record<string, unknown>)[binding] as D1DatabaseLike | undefined;
    return typeof database?.prepare === "function"
      ? { feed: d1CaptureFeed(database), database: `D1 ${binding}` }
      : undefined;
  };
}

/**
 * The drain for an object whose env has the change table `table` reads (D1's binding by
 * default); undefined without one, or when turned off.
 */
export function captureDrain(
  storage: AlarmStorageLike,
  env: CaptureEnv | undefined,
  log: CapturedLog,
  table: DrainedTable = d1ChangeTable,
): CaptureDrain | undefined {
  if (env === undefined) return undefined;
  const intervalMs = captureIntervalMs(env, CAPTURE_INTERVAL_MS);
  if (intervalMs === 0) return undefined;
  const drained = table(env);
  if (drained === undefined) return undefined;
  const { warn } = objectLogger(env);
  return new CaptureDrain(storage, drained.feed, log, intervalMs, warn, drained.database);
}

/** The change table as the drain reads it: with D1's bookmark of each read, if any. */
export type DrainedFeed = CaptureFeed & { bookmark?(): string | undefined };

export class CaptureDrain {
  readonly intervalMs: number;
  readonly #storage: AlarmStorageLike;
  readonly #feed: DrainedFeed;
  readonly #log: CapturedLog;
  #lastCall = Number.NEGATIVE_INFINITY;
  #armed = false;
  /** When the last drain began (changes committed before it are in the log). */
  #drainedAt = Number.NEGATIVE_INFINITY;
  /**
   * The log's append mark before the change table's last complete read (see #pass): the one
   * the log keeps in storage until the first drain, then this object's.
   */
  #readMark: number | undefined;
  #started = false;
  #applied = 0;
  #lags: number[] = [];
  #lastError = "";
  /** Whether the last drain failed (see CaptureDrainStats.failed). */
  #failed = false;
  readonly #warn: (message: string) => void;
  readonly #database: string;
  /** One drain at a time; asked for while one runs, it runs once more after it. */
  readonly drain = rerunning(() => this.#pass());

  constructor(
    storage: AlarmStorageLike,
    feed: DrainedFeed,
    log: CapturedLog,
    intervalMs: number,
    warn: (message: string) => void = console.warn,
    database = "D1",
  ) {
    this.#warn = warn;
    this.#database = database;
    this.#storage = storage;
    this.#feed = feed;
    this.#log = log;
    this.intervalMs = intervalMs;
  }

  /**
   * An isolate calls the log: the alarm keeps going. Before a sync (`beforeRead`), a drain
   * older than two intervals is made first, so the read sees what was written meanwhile.
   */
  async touch(beforeRead: boolean): Promise<void> {
    this.#lastCall = Date.now();
    if (!this.#armed) await this.#arm();
    if (beforeRead && Date.now() - this.#drainedAt > 2 * this.intervalMs) await this.drain();
  }

  /** A write was appended: drain what other writers committed since (not awaited). */
  afterWrite(): void {
    void this.drain();
  }

  /**
   * Whether a captured change waits in the change table (true when the database cannot be
   * asked): a load that read the database before it may show a change the log does not
   * have yet.
   */
  async waiting(): Promise<boolean> {
    try {
      return await this.#feed.pending();
    } catch {
      return true;
    }
  }

  async alarm(): Promise<void> {
    this.#armed = false;
    await this.drain();
    if (Date.now() - this.#lastCall < IDLE_MS) await this.#arm();
  }

  stats(): CaptureDrainStats {
    const sorted = [...this.#lags].sort((a, b) => a - b);
    const at = (q: number) =>
      sorted.length === 0
        ? undefined
        : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    return {
      applied: this.#applied,
      lagP50: at(0.5),
      lagP99: at(0.99),
      intervalMs: this.intervalMs,
      ...(this.#failed && { failed: true as const }),
    };
  }

  async #arm(): Promise<void> {
    this.#armed = true;
    await this.#storage.setAlarm(Date.now() + this.intervalMs);
  }

  /**
   * Never throws: a failure (the database out of reach) is logged once, said in `stats()`
   * (`failed`) until a drain succeeds, and tried again next time.
   */
  async #pass(): Promise<void> {
    const started = Date.now();
    let appended = false;
    try {
      if (!this.#started) {
        // A restarted object (evicted after idling, or re-created) goes on from the mark kept
        // in storage: without it, changes made meanwhile could only invalidate (issue 42).
        await this.#log.ready();
        this.#readMark = this.#log.drainMark();
        this.#started = true;
      }
      for (;;) {
        // A change read now committed after the last complete read began (one committed
        // earlier was read then). If no write has appended since, a write committed after
        // the change appends after its record: the record is in commit order and patches
        // (SQLite commits one at a time, so the table's order is the commits'). A write
        // that appended meanwhile may have committed after it (its turn lapsed, the object
        // restarted): then the record only invalidates. So does a late data API change, and
        // a change read while a write holds the turn: that write may have committed before
        // it, and its record, in order, would come after.
        // PostgreSQL's table may hold a change of a concurrent transaction after one that
        // committed later, but of another row (see its capture.ts): each row's are in order.
        const since = this.#readMark;
        const mark = this.#log.appendMark();
        const changes = await this.#feed.read(BATCH);
        const complete = changes.length < BATCH;
        if (changes.length === 0) {
          this.#readMark = mark;
          await this.#log.keepDrainMark(mark);
          break;
        }
        const ordered =
          since !== undefined &&
          this.#log.appendMark() === since &&
          !this.#log.turnHeld() &&
          !changes.some((c) => c.late);
        // In the log (in the object's storage) before the rows go: exactly once, or twice.
        appended = true;
        await this.#log.appendCaptured(
          changes.map((c) => ({ event: c.event })),
          ordered,
          this.#feed.bookmark?.(),
        );
        await this.#feed.consume(changes);
        const now = Date.now();
        for (const change of changes) this.#lags.push(Math.max(0, now - change.at));
        if (this.#lags.length > LAG_SAMPLES) this.#lags.splice(0, this.#lags.length - LAG_SAMPLES);
        this.#applied += changes.length;
        if (complete) {
          this.#readMark = mark;
          await this.#log.keepDrainMark(mark);
          break;
        }
      }
      this.#lastError = "";
      this.#failed = false;
    } catch (error) {
      // Rows appended may still be in the table: read again, they are a second copy, which
      // must not be in order (it would apply them twice). The kept mark is gone likewise.
      if (appended) this.#readMark = undefined;
      this.#failed = true;
      const message = String((error as Error)?.message ?? error);
      if (message !== this.#lastError) {
        this.#warn(`[edgecache] [capture] draining ${this.#database} failed: ${message}; retrying`);
        this.#lastError = message;
      }
    } finally {
      this.#drainedAt = started;
    }
  }
}
