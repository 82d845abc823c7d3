import type { Followed, WriteHooks } from "../core/cache/types.ts";
import type { LogPosition } from "../core/change-log/contract.ts";
import type { WriteEvent } from "../core/deps/planner.ts";
import type { CacheEntry } from "../core/entries/entry.ts";
import { countDelta, recounted } from "../database/analysis/count-deltas.ts";
import {
  insertedKeys,
  mergedRows,
  placedRows,
  probesOf,
  toldRows,
  toldValues,
} from "../database/analysis/group-rows.ts";
import {
  restrictedStatement,
  slidStatement,
  tableName,
  whereless,
} from "../database/analysis/group-statements.ts";
import {
  closedTo,
  type GroupPlan,
  groupPlan,
  positional,
  type Restriction,
  restrictionOf,
  sameKey,
  sharedColumns,
  splicedRows,
} from "../database/analysis/groups.ts";
import { outsideAll, outsideOf } from "../database/analysis/memberships.ts";
import type { SqlDialect } from "../database/analysis/parse.ts";
import { resultRows, type SqlShape } from "../database/analysis/shapes.ts";
import {
  type Leaving,
  leavingOf,
  movedOf,
  slidRows,
  sortedValues,
} from "../database/analysis/window-slides.ts";
import { decode, encode } from "./codec.ts";
import { withRows } from "./result-patches.ts";
import { needed, sharedStatements, worthReading } from "./shared-statements.ts";
import type { ResultForm } from "./statement-contract.ts";
import type { GroupCounts } from "./stats.ts";

/**
 * Group patches for the statement cache (the rules are database/analysis/groups.ts's): the
 * engine's `maintain` hook. A result a write would drop, whose rows are keyed and whose
 * changed rows the write names, is kept by running its statement for those rows alone
 * and splicing them in; one statement serves every result of a record that needs the same.
 */

const TEXT = new TextDecoder();
/**
 * Jobs waiting at most (they run one at a time with the reloads): past it, a write's
 * results are dropped as without group patches, so a burst of writes cannot queue work
 * (and entries' bodies) without bound.
 */
const MOST_WAITING = 1_000;

/**
 * Records in a row a kept result is brought through after its job was overtaken (see
 * `keep`): past it, the result is dropped, so a stream of writes cannot keep one job alive.
 */
const MOST_FOLLOWED = 4;

/** The counts a kept result adds to besides `patched` (see GroupCounts). */
type Kind = "told" | "outside" | "counted" | "slid" | "shared";

/** A result a record would drop, as its job keeps it. */
interface Keeping {
  key: string;
  /** Its entry before the record. */
  entry: CacheEntry;
  /** Read since it was stored. */
  wanted: boolean;
  /** The record's position: the result is stored as of it. */
  record: LogPosition;
  /** Records followed in a row to get here (see `keep`). */
  depth: number;
  /**
   * Keys of new base rows the statement that made it looked for and did not find: gone
   * (or outside its joins) when it ran, which a later record's delete of them leaves it
   * as it is (see slidRows).
   */
  absent?: readonly unknown[];
}

/**
 * A store refused for a record applied after its load that concerns it and can be told
 * event by event: the entry it would have stored, and that record (see `keep`).
 */
export interface Refused {
  entry: CacheEntry;
  followed: Followed;
}

/** What a cached read is maintained from: its statement as it ran. */
export interface GroupRead {
  sql: string;
  params: readonly unknown[];
  shape: SqlShape;
}

/**
 * The `maintain` hook of a statement cache whose database runs statements it writes. A
 * result read since it was stored is kept at the cost of its statement; one nobody read
 * since rides along only where that statement runs anyway (for another result of the same
 * select list): run for it alone, it would cost about what a reload does if a read comes,
 * and most such results see none.
 */
export function groupPatcher<R>(deps: {
  dialect: SqlDialect;
  /** The read behind a key, where it is still known. */
  readOf(key: string): GroupRead | undefined;
  /** Runs a statement the cache wrote (see StatementDatabase's `query`). */
  query(sql: string, params: readonly unknown[]): Promise<R>;
  form: ResultForm<R>;
  /**
   * Stores `result` for `key` as a load that began at `at`, for `ttl` ms: whether it was
   * stored, or the later records it was refused for where they can be followed.
   */
  store(key: string, result: R, at: LogPosition, ttl: number): Promise<boolean | Refused>;
  counts: GroupCounts;
  fault(err: unknown): void;
  now(): number;
}): NonNullable<WriteHooks["maintain"]> {
  const { recordStatements, memberReads, memberRows, mergedFrom } = sharedStatements(deps);
  const counts = deps.counts;
  let waiting = 0;
  /**
   * Stores a kept result and counts it (as `kinds` too). Where a record applied while its
   * job ran concerns it (the next write came first), it is brought through that record by
   * the job the record calls for, and stored as of it: checked against the records after
   * it, and brought through the next in turn. Past MOST_FOLLOWED in a row, dropped. A
   * statement a record's own jobs ran serves those that follow it (see recordStatements):
   * its rows are no older than it. `absent`: see Keeping.
   */
  const keep = async (
    k: Keeping,
    ttl: number,
    result: R,
    kinds: readonly Kind[],
    absent?: readonly unknown[],
  ): Promise<void> => {
    const done = await deps.store(k.key, result, k.record, ttl);
    if (done === true) {
      counts.patched++;
      for (const kind of kinds) counts[kind]++;
      return;
    }
    const { wanted, depth } = k;
    const job =
      done !== false &&
      depth < MOST_FOLLOWED &&
      maintained(
        {
          key: k.key,
          entry: done.entry,
          wanted,
          record: done.followed.at,
          depth: depth + 1,
          absent,
        },
        done.followed.events,
      );
    if (!job) {
      counts.dropped++;
      return;
    }
    counts.followed++;
    await job();
  };
  const maintained = (
    k: Keeping,
    events: readonly WriteEvent[],
  ): (() => Promise<void>) | undefined => {
    if (waiting >= MOST_WAITING) return undefined;
    const { entry, wanted } = k;
    const read = deps.readOf(k.key);
    if (!read) return undefined;
    const ttl = entry.freshUntil - deps.now();
    if (ttl <= 0) return undefined;
    // Base rows written that its memberships may leave out (a new article by an author
    // nobody follows): told by one read, shared, before any group patch is planned.
    const outside = outsideOf(read.shape, events);
    const statements = outside && recordStatements(k.record);
    // A count moves by the rows it gains and loses, where its load was exact.
    const counting = entry.exact === true && outside?.exists !== undefined;
    const reads = outside && memberReads(outside, read.sql, statements!, wanted, counting);
    if (!reads) return patchOf(k, read, ttl, events);
    waiting++;
    return async () => {
      waiting--;
      const found = await memberRows(reads, statements!, k.depth > 0);
      const kept = found && decode(TEXT.decode(entry.body));
      let rows: unknown[] | undefined;
      if (found && !outsideAll(outside!, found)) {
        const delta = counting ? countDelta(read.shape, outside!, found) : undefined;
        const held = delta !== undefined ? resultRows(kept) : undefined;
        rows = held && recounted(held, delta!);
        if (!rows) return patchOf(k, read, ttl, events)?.();
      }
      if (!found) return patchOf(k, read, ttl, events)?.();
      const result = deps.form.restored(rows ? withRows(kept, rows) : kept);
      await keep(k, ttl, result, [rows ? "counted" : "outside"]);
    };
  };
  return (key, entry, events, wanted, record) =>
    maintained({ key, entry, wanted, record, depth: 0 }, events);
  /** A group patch's job for a result a write drops (see groups.ts), or undefined. */
  function patchOf(
    k: Keeping,
    read: GroupRead,
    ttl: number,
    events: readonly WriteEvent[],
  ): (() => Promise<void>) | undefined {
    const plan = groupPlan(read.shape);
    if (!plan) return undefined;
    const { entry, wanted } = k;
    // A write only presences and tallies read (a favourite, a follow): told by its rows.
    const exact = entry.exact === true;
    if (toldValues(plan, events, exact)) {
      waiting++;
      return async () => {
        waiting--;
        const kept = decode(TEXT.decode(entry.body));
        const held = resultRows(kept);
        const rows = held && toldRows(plan, held, events, exact);
        if (rows) await keep(k, ttl, deps.form.restored(withRows(kept, rows)), ["told"]);
        else counts.dropped++;
      };
    }
    const open = whereless(read.sql, read.params, deps.dialect) === true;
    // Base rows deleted under its window: those it holds leave, rows from past its end come in.
    const leaving = leavingOf(plan, events, open) ?? movedOf(plan, events, open);
    if (leaving) return slideOf(k, read, ttl, plan, leaving);
    // Shared by the results of its select list whatever their parameters, where the
    // columns the write changes allow (each takes its per-viewer columns from its own rows;
    // the statement carries the base columns that name rows the result does not show).
    const columns = sharedColumns(plan, events);
    // New base rows, where the statement tells which enter (see insertedKeys).
    const inserted = columns && insertedKeys(plan, events, open);
    const wide = columns && restrictionOf(plan, events, true, inserted !== undefined);
    // Whether a new row's per-viewer flags hold for anyone (see mergedRows).
    const probes =
      inserted && columns
        ? probesOf(plan, columns).filter((p) => tableName(read.sql, p.table) !== undefined)
        : [];
    const keyedStatement =
      wide && restrictedStatement(plan, read.sql, read.params, deps.dialect, wide, true, probes);
    const keyed = keyedStatement !== undefined;
    const restriction = keyed || wide?.size === 0 ? wide : restrictionOf(plan, events);
    if (!restriction) return undefined;
    // Nothing it reads changed: kept as it was.
    if (restriction.size === 0) {
      waiting++;
      return async () => {
        waiting--;
        await keep(k, ttl, deps.form.restored(decode(TEXT.decode(entry.body))), []);
      };
    }
    const statement =
      keyedStatement ?? restrictedStatement(plan, read.sql, read.params, deps.dialect, restriction);
    if (!statement) return undefined;
    const own = encode(statement.params);
    const statements = recordStatements(k.record);
    const text = keyed
      ? encode(["keyed", statement.sql])
      : encode([statement.sql, statement.params]);
    const one = needed(statements, text, wanted);
    waiting++;
    return async () => {
      waiting--;
      // A keyed statement serves every result of its select list: worth it for several.
      if (!worth(k, keyed ? worthReading(one) : one.wanted)) return;
      const kept = decode(TEXT.decode(entry.body));
      const held = resultRows(kept);
      // Its own statement, where a keyed one another result ran cannot tell it its new
      // rows' per-viewer columns: only for new rows, and only where it was read.
      const { merged, source, fresh } = await mergedFrom(
        one,
        statement,
        own,
        { sql: read.sql, statements, alone: !!inserted && wanted, merging: keyed },
        (rows, from, asked, linked) =>
          held &&
          mergedRows(plan, held, rows, events, columns!, {
            closed: closedTo(plan, events),
            inserted,
            own: from.params === own,
            probes,
            linked,
            asked,
          }),
      );
      const spliced = keyed ? merged?.rows : fresh;
      // The entering rows' keys are not among the held rows the statement must have found.
      const found = inserted ? withoutKeys(restriction, plan.primaryKey, inserted) : restriction;
      let rows = held && spliced && splicedRows(plan, held, spliced, found);
      if (rows && merged?.entering.length) rows = placedRows(plan, rows, merged.entering);
      if (!rows) {
        counts.dropped++;
        return;
      }
      // New rows it did not find were gone by then: a later delete of them changes nothing.
      const absent = inserted?.filter((key) => !merged!.entering.some((e) => sameKey(e.key, key)));
      const result = deps.form.restored(withRows(kept, rows));
      await keep(k, ttl, result, source.params !== own ? ["shared"] : [], absent);
    };
  }
  /**
   * A job for a windowed result whose rows a record deletes (see window-slides.ts): the rows
   * it holds of them leave, and where it was full, a statement shared by every result of the
   * select list with that window reads the rows that come in from past its end (their
   * per-viewer columns told as a new row's are). Undefined where the record changes anything
   * else the result reads, or the statement cannot be written.
   */
  function slideOf(
    k: Keeping,
    read: GroupRead,
    ttl: number,
    plan: GroupPlan,
    leaving: Leaving,
  ): (() => Promise<void>) | undefined {
    // Slid, the rows it keeps keep their values: nothing else it reads may change. Read
    // again whole, only the per-viewer columns come from what it held (`sharedColumns`).
    if (!leaving.whole && restrictionOf(plan, leaving.rest)?.size !== 0) return undefined;
    const kept = decode(TEXT.decode(k.entry.body));
    const held = resultRows(kept);
    const slid = leaving.whole
      ? { rows: [], refill: plan.window!.limit }
      : held && slidRows(plan, held, leaving, k.absent);
    if (!held || !slid) return undefined;
    const store = (rows: unknown[], shared = false) =>
      keep(
        k,
        ttl,
        deps.form.restored(withRows(kept, rows)),
        shared ? ["slid", "shared"] : ["slid"],
      );
    waiting++;
    if (slid.refill === 0) {
      return async () => {
        waiting--;
        await store(slid.rows);
      };
    }
    const columns = sharedColumns(plan, leaving.rest);
    const probes = columns
      ? probesOf(plan, columns).filter((p) => tableName(read.sql, p.table) !== undefined)
      : [];
    // Slid, the rows after the last it keeps: by its sort values where they can be written
    // (a newer row written before the statement runs moves every position), else by position.
    const last = leaving.whole ? undefined : slid.rows.at(-1);
    const after = last === undefined ? undefined : sortedValues(plan, last);
    const slidFrom = (window: { limit: number; offset: number }, sorted?: typeof after) =>
      slidStatement(plan, read.sql, read.params, deps.dialect, window, probes, sorted);
    const { limit } = plan.window!;
    const keyset =
      columns && !leaving.whole && after
        ? slidFrom({ limit: slid.refill, offset: 0 }, after)
        : undefined;
    const statement =
      columns &&
      (leaving.whole
        ? slidFrom(plan.window!)
        : (keyset ?? slidFrom({ limit: slid.refill, offset: limit - slid.refill })));
    if (!statement) {
      waiting--;
      return undefined;
    }
    const statements = recordStatements(k.record);
    const one = needed(statements, encode(["slid", statement.sql]), k.wanted);
    const own = encode(statement.params);
    return async () => {
      waiting--;
      // Read again whole, it costs what a reload does: only where one of them was read.
      if (!worth(k, leaving.whole ? one.wanted : worthReading(one))) return;
      // Rows read by position and rows read by name are not one form (an ORM's mapped result).
      const form = held[0] === undefined ? undefined : positional(held[0]);
      const { merged, source } = await mergedFrom(
        one,
        statement,
        own,
        { sql: read.sql, statements, alone: true, merging: true },
        (rows, from, asked, linked) =>
          form === undefined || rows.every((r) => positional(r) === form)
            ? mergedRows(plan, held, rows, leaving.rest, columns!, {
                sliding: true,
                ...(leaving.whole && { written: leaving.keys }),
                own: from.params === own,
                probes,
                linked,
                asked,
              })
            : undefined,
      );
      // Slid, every row it read comes from past the rows it keeps: none of them is held.
      const rows = leaving.whole
        ? merged?.all
        : merged?.rows.length === 0
          ? placedRows(plan, slid.rows, merged.entering)
          : undefined;
      const expected = leaving.whole
        ? merged?.all.length
        : slid.rows.length + (merged?.entering.length ?? 0);
      // Read by sort values, fewer rows than it lost is taken as a comparison that does not
      // agree with the order (not as the table's end): dropped, never stored short.
      const short = keyset !== undefined && (merged?.entering.length ?? 0) < slid.refill;
      if (!rows || short || rows.length !== expected || rows.length > plan.window!.limit) {
        counts.dropped++;
        return;
      }
      await store(rows, source.params !== own);
    };
  }
}

/**
 * Whether a job runs its statement for `k`: where the statement is worth it for the results
 * that need it (`worthy`), or `k` is brought through a later record (its first job's
 * statement ran already, and what it kept would be lost: the later record's statement is
 * shared by every result that follows that record).
 */
function worth(k: Keeping, worthy: boolean): boolean {
  return worthy || k.depth > 0;
}

/** `restriction` without `keys` among its values of `column`. */
function withoutKeys(
  restriction: Restriction,
  column: string,
  keys: readonly unknown[],
): Restriction {
  const out: Restriction = new Map(restriction);
  const values = out.get(column)?.filter((v) => !keys.some((k) => sameKey(k, v)));
  if (values?.length) out.set(column, values);
  else out.delete(column);
  return out;
}
