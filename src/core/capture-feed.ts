import type { Cache } from "./cache/index.ts";
import type { Row } from "./data/query.ts";
import type { WriteEvent } from "./deps/planner.ts";

/**
 * Change capture: writes that bypass edgecache (psql, a migration, another service)
 * recorded by the database itself, row by row with old and new rows, and fed into the
 * change log like the data API's own writes, so the same planner invalidates exactly
 * what they touch, on every node. Each database has its mechanism (triggers into a
 * change table, see the sources); this file is the portable part.
 */

/**
 * How long the data API's own rows wait in the change table for their write's record
 * (then they are removed, see CapturingSource.recorded) before capture takes them as a
 * write the data API never recorded (its node died after the commit), ms.
 */
export const API_GRACE_MS = 5000;

/** One captured row change, in the form the source reads rows. */
export interface CapturedChange {
  /** Position in the change table; consumed changes are removed by it. */
  seq: number;
  /** The row change; without rows when they cannot be trusted (see CaptureFeed.read). */
  event: WriteEvent;
  /** When the database recorded it (ms since the epoch), for the capture lag. */
  at: number;
  /**
   * A data API write's own change, read because the write's record never came (see
   * API_GRACE_MS): its place among the changes read before it is not known.
   */
  late?: boolean;
}

/** What the installation looks like, for `edgecache capture status`. */
export interface CaptureStatus {
  installed: boolean;
  /** Names this installation: a new install (after an uninstall) has another. */
  id?: string;
  /** Tables with capture triggers. */
  tables: string[];
  /** Tables served without capture (installed before they existed): install again. */
  missing: string[];
  /** Captured changes not consumed yet (edgecache stopped, or catching up). */
  backlog: number;
  /** Why the triggers should be installed again: an earlier version's miss some changes. */
  outdated?: string;
}

/** A database's change table, as the follower consumes it. */
export interface CaptureFeed {
  /** Whether capture is installed; asked again while running, so an install is picked up. */
  installed(): Promise<boolean>;
  /**
   * Takes or keeps the right to consume (one node of a deployment does, the others
   * apply what it appends to the shared log); false while another node holds it.
   */
  lead(): Promise<boolean>;
  /**
   * The oldest changes not consumed yet, at most `limit`. A row of a table whose columns
   * changed since the install comes back without rows (a table-level event). `urgent`: a
   * caller waits for this read to see every change committed before it (see `sync`); a
   * feed that knows from its last `wait` that nothing was committed since its last read
   * may otherwise answer none without reading.
   */
  read(limit: number, urgent?: boolean): Promise<CapturedChange[]>;
  /** Whether any change waits in the table (asked after a load; see localChangeLog). */
  pending(): Promise<boolean>;
  /**
   * Whether nothing waits in the table, as `pending` tells it but told by the feed's next
   * look at the database after the call (no statement of its own, so it may take a while):
   * true when that look finds no commit since a read that left nothing out and whose
   * changes are all consumed; false otherwise, or when no look comes in time. Absent where
   * the feed cannot tell without a statement.
   */
  settled?(): Promise<boolean>;
  /** Removes changes once their record is applied. */
  consume(changes: readonly CapturedChange[]): Promise<void>;
  /**
   * Resolves when new changes may be there (a notification, a commit seen), after `ms`, or
   * when `signal` aborts (the follower is asked to read at once).
   */
  wait(ms: number, signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/**
 * A feed whose wake-ups can carry their changes (PostgreSQL's NOTIFY payload), so that
 * applying one costs no read of the table. The table stays the source of truth: a carried
 * change is consumed from it like a read one, and a wake-up that could not carry its
 * change (too large, one of many in a transaction, an older install's trigger) or that may
 * have been missed (the listening connection started again) resolves `wait` instead, so
 * the follower reads the table.
 */
export interface CarryingFeed extends CaptureFeed {
  /** `apply` receives the changes wake-ups carry as they arrive (those of one tick together). */
  carry(apply: (changes: CapturedChange[]) => void): void;
}

export function isCarrying(feed: CaptureFeed): feed is CarryingFeed {
  return typeof (feed as Partial<CarryingFeed>).carry === "function";
}

/** A source that can capture writes made around it. */
export interface CapturingSource {
  captureStatus(): Promise<CaptureStatus>;
  /** Creates the change table and a trigger on every served table; idempotent. */
  installCapture(): Promise<CaptureStatus>;
  /** Drops the triggers and the change table. */
  uninstallCapture(): Promise<void>;
  /**
   * The data API has recorded the write it marked `mark` (WriteOptions.capture): its rows
   * leave the change table. Never fails: rows left behind are captured later, harmlessly.
   */
  recorded(mark: string): Promise<void>;
  captureFeed(): CaptureFeed;
}

export function isCapturing(source: object): source is CapturingSource {
  return typeof (source as Partial<CapturingSource>).captureFeed === "function";
}

/** How long the follower waits before it tries again after an error (the database restarting), ms. */
const RETRY_MS = 250;
/** Changes applied per log record. */
const BATCH = 500;
/** How long the follower sleeps between checks while nothing happens, ms. */
const IDLE_MS = 1000;
/** How often a node asks whether capture has been installed, ms (a cheap catalog query). */
const INSTALL_POLL_MS = 100;
/** How long it waits for a wake-up before it looks anyway, ms. */
const POLL_MS = 250;
/** Capture lags kept for the percentiles. */
const LAG_SAMPLES = 4096;
/**
 * Changes remembered as applied, so that one both carried and read from the table (the
 * read came before its wake-up, or before its delete) is applied once.
 */
const APPLIED_MEMORY = 4096;

export interface CaptureFollower {
  /** Whether capture was installed when last asked (every second at most). */
  readonly installed: boolean;
  /** Whether this node consumed the change table when last asked (see CaptureFeed.lead). */
  readonly leading: boolean;
  /** Resolves once the changes captured before the start (the backlog) are applied. */
  readonly caughtUp: Promise<void>;
  /**
   * Resolves once the follower has first looked at the change table: `installed` and
   * `leading` then say what it found (another node leading is an answer too). Also once
   * that look failed, or on close. Never waits for the backlog to be applied; a look whose
   * statements never answer leaves it pending, so a caller bounds its wait.
   */
  readonly looked: Promise<void>;
  /**
   * Resolves true once every change committed before the call has been applied here: a read
   * that began after the call found nothing more to apply. False when this node cannot
   * tell (capture not installed, another node consumes, the database out of reach, closed):
   * the caller then invalidates by other means. Wakes the follower, so it costs one read.
   */
  sync(): Promise<boolean>;
  /**
   * Whether this change (its `seq` and `at`, as the feed reads them) was applied here: its
   * record is in the log, though its row may still wait to be deleted.
   */
  applied?(change: { seq: number; at: number }): boolean;
  /**
   * Captured changes this node has applied so far, whichever node read them from the change
   * table (the leader's records reach the others through a shared log): the node's count,
   * not this follower's. The lag, from the database's record to applied, ms, is of the
   * changes this node read.
   */
  stats(): { applied: number; lagP50: number | undefined; lagP99: number | undefined };
  close(): Promise<void>;
}

/**
 * Feeds captured changes into the cache's change log: reads a batch, applies it as one
 * record (unordered: it invalidates, never patches, since a captured write's place among
 * the data API's writes is not known), then consumes it. A crash between the two applies
 * it again, which is harmless. Errors (the database or the log out of reach) are logged
 * once and retried; nothing is consumed that was not applied.
 *
 * From a CarryingFeed, the changes its wake-ups carry are applied as they arrive, without
 * waiting for a read or for the loop, and deleted afterwards off the way; the loop still
 * reads the table every POLL_MS, when a wake-up carried nothing, and for `sync`.
 */
export function followCapture(
  cache: Cache,
  feed: CaptureFeed,
  logger: { warn(message: string): void } = console,
  /**
   * `unref`: its pauses do not keep a process alive (a library inside an application, which
   * may end while following). A node's server keeps its process alive anyway; before it
   * listens, a pause must (a retry at start).
   */
  options: { unref?: boolean } = {},
): CaptureFollower {
  let stopped = false;
  let leading = false;
  // sync(): reads started so far, and the callers waiting for a read numbered at least theirs
  // to find the table drained.
  let reads = 0;
  let waiters: { from: number; done: (ok: boolean) => void }[] = [];
  const drained = (read: number) => {
    const still = [];
    for (const w of waiters) {
      if (w.from <= read) w.done(true);
      else still.push(w);
    }
    waiters = still;
  };
  const giveUp = () => {
    for (const w of waiters) w.done(false);
    waiters = [];
  };
  let nudge = new AbortController();
  const lags: number[] = [];
  let lastError = "";
  let markCaughtUp: () => void = () => {};
  const caughtUp = new Promise<void>((resolve) => {
    markCaughtUp = resolve;
  });
  let markLooked: () => void = () => {};
  const looked = new Promise<void>((resolve) => {
    markLooked = resolve;
  });
  let wake: (() => void) | undefined;
  // With unref'd timers, a pause must never begin once close() has run: nothing else would
  // end it.
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (stopped) return resolve();
      const timer = setTimeout(resolve, ms);
      if (options.unref) unref(timer);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  let installed = false;
  let askedAt = Number.NEGATIVE_INFINITY;
  const step = async (): Promise<"idle" | "busy" | "empty"> => {
    // Asked every INSTALL_POLL_MS until installed, then once a second (an uninstall is
    // picked up within that).
    if (performance.now() - askedAt >= (installed ? IDLE_MS : INSTALL_POLL_MS)) {
      installed = await feed.installed();
      askedAt = performance.now();
    }
    if (!installed) {
      leading = false;
      giveUp();
      markLooked();
      return "idle";
    }
    leading = await feed.lead();
    markLooked();
    // Another node consumes: this one is caught up once nothing waits.
    if (!leading) {
      giveUp();
      return (await feed.pending()) ? "busy" : "idle";
    }
    const read = ++reads;
    const changes = await feed.read(BATCH, waiters.length > 0);
    if (changes.length === 0) {
      drained(read);
      return "empty";
    }
    await serially(() => apply(changes));
    // A short batch was all there was when the read began: applied, so the waiters may go
    // on before the delete (a failed delete leaves them to the next read, which consumes
    // them; after a restart it applies them again, harmlessly). Then the table is drained
    // as an empty read would find it: the follower waits for the next change, not reads
    // again at once.
    const short = changes.length < BATCH;
    if (short) drained(read);
    await feed.consume(changes);
    return short ? "empty" : "busy";
  };

  const report = (error: unknown) => {
    const message = (error as Error).message ?? String(error);
    if (message !== lastError) {
      logger.warn(`[edgecache] [capture] ${message}; retrying`);
      lastError = message;
    }
  };

  // Changes applied here, by position and record time (a new install numbers from 1 again).
  const done = new Set<string>();
  const id = (c: { seq: number; at: number }) => `${c.seq}@${c.at}`;
  /** Applies those of `changes` not applied yet, as one record; answers them. */
  const apply = async (changes: readonly CapturedChange[]): Promise<CapturedChange[]> => {
    const fresh = changes.filter((c) => !done.has(id(c)));
    if (fresh.length === 0) return fresh;
    await cache.applyWrite(
      fresh.map((c) => c.event),
      { captured: true },
    );
    const now = Date.now();
    for (const change of fresh) {
      lags.push(Math.max(0, now - change.at));
      if (lags.length > LAG_SAMPLES) lags.shift();
      done.add(id(change));
    }
    for (const old of done) {
      if (done.size <= APPLIED_MEMORY) break;
      done.delete(old);
    }
    return fresh;
  };
  // One apply at a time, so that a change both carried and read is never applied twice
  // nor consumed by the read while its carried apply may still fail.
  let queue: Promise<unknown> = Promise.resolve();
  const serially = <T>(job: () => Promise<T>): Promise<T> => {
    const run = queue.then(job);
    queue = run.catch(() => {});
    return run;
  };

  // Carried changes: deleted from the table once applied, in batches, one delete at a time,
  // never in the way of the next apply. A failed delete leaves them in the table, where the
  // next read finds them applied and consumes them.
  let unconsumed: CapturedChange[] = [];
  let consuming: Promise<void> | undefined;
  const consumeSoon = (changes: readonly CapturedChange[]) => {
    if (changes.length === 0) return;
    unconsumed.push(...changes);
    consuming ??= (async () => {
      try {
        while (unconsumed.length > 0) await feed.consume(unconsumed.splice(0, BATCH));
      } catch (error) {
        unconsumed = [];
        report(error);
      } finally {
        consuming = undefined;
      }
    })();
  };
  const carrying = new Set<Promise<void>>();
  if (isCarrying(feed)) {
    feed.carry((changes) => {
      // Not leading: the node that leads applies them; they wait in the table until then.
      if (stopped || !leading) return;
      const work = serially(() => apply(changes)).then(consumeSoon, report);
      carrying.add(work);
      void work.finally(() => carrying.delete(work));
    });
  }

  const loop = async () => {
    while (!stopped) {
      try {
        const state = await step();
        lastError = "";
        if (state !== "busy") markCaughtUp();
        if (state === "idle") await sleep(installed ? IDLE_MS : INSTALL_POLL_MS);
        else if (state === "busy" && !(await feed.lead())) await sleep(POLL_MS);
        else if (state === "empty" && waiters.length === 0) {
          await feed.wait(POLL_MS, nudge.signal);
          if (nudge.signal.aborted) nudge = new AbortController();
        }
      } catch (error) {
        giveUp();
        markLooked();
        report(error);
        if (!stopped) await sleep(RETRY_MS);
      }
    }
  };
  const running = loop();

  return {
    get installed() {
      return installed;
    },
    get leading() {
      return leading;
    },
    caughtUp,
    looked,
    applied: (change) => done.has(id(change)),
    sync() {
      if (stopped || !installed || !leading) return Promise.resolve(false);
      return new Promise<boolean>((done) => {
        waiters.push({ from: reads + 1, done });
        nudge.abort();
        wake?.();
      });
    },

    stats() {
      const sorted = [...lags].sort((a, b) => a - b);
      const at = (q: number) =>
        sorted.length === 0
          ? undefined
          : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
      return { applied: cache.capturedApplied(), lagP50: at(0.5), lagP99: at(0.99) };
    },
    async close() {
      stopped = true;
      giveUp();
      nudge.abort();
      wake?.();
      markCaughtUp();
      markLooked();
      await running;
      await Promise.all(carrying);
      await consuming;
      await feed.close();
    },
  };
}

/**
 * A feed whose events are given to `map` (renamed, their values put in another form). A
 * late data API change (read after its write's record never came) loses its rows: its
 * place among the changes applied before it is not known, so it concerns its table as a
 * whole instead of patching. The changes a carrying feed's wake-ups carry are mapped too.
 */
export function mapFeed(feed: CaptureFeed, map: (event: WriteEvent) => WriteEvent): CaptureFeed {
  const mapped = (c: CapturedChange): CapturedChange => {
    const event = map(c.event);
    return { ...c, event: c.late ? { table: event.table, op: event.op } : event };
  };
  const out: CaptureFeed = {
    ...feed,
    async read(limit, urgent) {
      return (await feed.read(limit, urgent)).map(mapped);
    },
  };
  if (!isCarrying(feed)) return out;
  // The spread's `carry` would hand carried changes over unmapped.
  const carrying: CarryingFeed = {
    ...out,
    carry: (apply) => feed.carry((changes) => apply(changes.map(mapped))),
  };
  return carrying;
}

/** A timer that does not keep a process alive by itself (Node; elsewhere timers never do). */
export function unref<T>(timer: T): T {
  (timer as { unref?: () => void }).unref?.();
  return timer;
}

/**
 * A change table's row (seq, tbl, op, old, new, at in ms) as the follower takes it, the rows
 * as JSON text or parsed; the columns are its table's (see capturedEvent).
 */
export function capturedChange(
  row: Record<string, unknown>,
  columns: readonly string[] | undefined,
): CapturedChange {
  return {
    seq: Number(row.seq),
    at: Number(row.at),
    ...(row.late === true || row.late === 1 ? { late: true } : {}),
    event: capturedEvent(
      String(row.tbl),
      String(row.op),
      (row.old as string | Row | null) ?? null,
      (row.new as string | Row | null) ?? null,
      columns,
    ),
  };
}

/**
 * A captured row change as the planner takes it. Rows recorded with columns other than
 * the table's (a schema change since the install) are dropped: the event then changes the
 * table as a whole, which the planner handles conservatively.
 */
export function capturedEvent(
  table: string,
  op: string,
  old: string | Row | null,
  neu: string | Row | null,
  columns: readonly string[] | undefined,
): WriteEvent {
  const kind = op === "insert" || op === "delete" ? op : "update";
  const parse = (row: string | Row | null): Row | undefined =>
    row === null ? undefined : typeof row === "string" ? (JSON.parse(row) as Row) : row;
  const before = parse(old);
  const after = parse(neu);
  const fits = (row: Row | undefined) =>
    row === undefined ||
    (columns !== undefined &&
      Object.keys(row).length === columns.length &&
      columns.every((c) => c in row));
  if (!fits(before) || !fits(after)) return { table, op: kind };
  return {
    table,
    op: kind,
    ...(before && { old: before }),
    ...(after && { new: after }),
  };
}
