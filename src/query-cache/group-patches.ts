import type { WriteHooks } from "../core/cache/types.ts";
import type { LogPosition } from "../core/change-log/contract.ts";
import type { WriteEvent } from "../core/deps/planner.ts";
import { restrictedStatement, whereless } from "../sql/analysis/group-statements.ts";
import {
  groupPlan,
  insertedKeys,
  mergedRows,
  placedRows,
  type Restriction,
  restrictionOf,
  sameKey,
  sharedColumns,
  splicedRows,
} from "../sql/analysis/groups.ts";
import type { SqlDialect } from "../sql/analysis/parse.ts";
import { resultRows, type SqlShape } from "../sql/analysis/shapes.ts";
import { decode, encode } from "./codec.ts";
import { withRows } from "./result-patches.ts";
import type { ResultForm } from "./statement-contract.ts";
import type { GroupCounts } from "./stats.ts";

/**
 * Group patches for the statement cache (the rules are sql/analysis/groups.ts's): the
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
  /** Stores `result` for `key` as a load that began at `at`, for `ttl` ms. */
  store(key: string, result: R, at: LogPosition, ttl: number): Promise<boolean>;
  counts: GroupCounts;
  fault(err: unknown): void;
  now(): number;
}): NonNullable<WriteHooks["maintain"]> {
  // The statements of one record's jobs (its events array), shared among its results.
  const records = new WeakMap<readonly WriteEvent[], Map<string, Shared<R>>>();
  const counts = deps.counts;
  let waiting = 0;
  return (key, entry, events, wanted) => {
    if (waiting >= MOST_WAITING) return undefined;
    const read = deps.readOf(key);
    if (!read) return undefined;
    const plan = groupPlan(read.shape);
    if (!plan) return undefined;
    // Shared by the results of its select list whatever their parameters, where the
    // columns the write changes allow (each takes its per-viewer columns from its own rows;
    // the statement carries the base columns that name rows the result does not show).
    const columns = sharedColumns(plan, events);
    // New base rows, where the statement tells which enter (see insertedKeys).
    const inserted =
      columns &&
      insertedKeys(plan, events, whereless(read.sql, read.params, deps.dialect) === true);
    const wide = columns && restrictionOf(plan, events, true, inserted !== undefined);
    const keyedStatement =
      wide && restrictedStatement(plan, read.sql, read.params, deps.dialect, wide, true);
    const keyed = keyedStatement !== undefined;
    const restriction = keyed || wide?.size === 0 ? wide : restrictionOf(plan, events);
    if (!restriction) return undefined;
    const ttl = entry.freshUntil - deps.now();
    if (ttl <= 0) return undefined;
    // Nothing it reads changed: kept as it was.
    if (restriction.size === 0) {
      waiting++;
      return async (at) => {
        waiting--;
        const kept = decode(TEXT.decode(entry.body));
        if (await deps.store(key, deps.form.restored(kept), at, ttl)) counts.patched++;
      };
    }
    const statement =
      keyedStatement ?? restrictedStatement(plan, read.sql, read.params, deps.dialect, restriction);
    if (!statement) return undefined;
    const own = encode(statement.params);
    const statements = records.get(events) ?? new Map<string, Shared<R>>();
    records.set(events, statements);
    const text = keyed
      ? encode(["keyed", statement.sql])
      : encode([statement.sql, statement.params]);
    const one = statements.get(text) ?? { wanted: false };
    one.wanted ||= wanted;
    statements.set(text, one);
    waiting++;
    return async (at) => {
      waiting--;
      if (!one.wanted) return;
      if (!one.run) {
        one.params = own;
        counts.statements++;
        one.run = deps.query(statement.sql, statement.params);
      }
      const kept = decode(TEXT.decode(entry.body));
      const held = resultRows(kept);
      let fresh: readonly unknown[] | undefined;
      try {
        fresh = resultRows(deps.form.kept(await one.run));
      } catch (err) {
        deps.fault(err);
      }
      const merged =
        keyed && held && fresh
          ? mergedRows(plan, held, fresh, events, columns!, inserted, one.params === own)
          : undefined;
      const spliced = keyed ? merged?.rows : fresh;
      // The entering rows' keys are not among the held rows the statement must have found.
      const found = inserted ? withoutKeys(restriction, plan.primaryKey, inserted) : restriction;
      let rows = held && spliced && splicedRows(plan, held, spliced, found);
      if (rows && merged?.entering.length) rows = placedRows(plan, rows, merged.entering);
      if (!rows) {
        counts.dropped++;
        return;
      }
      const result = deps.form.restored(withRows(kept, rows));
      if (await deps.store(key, result, at, ttl)) {
        counts.patched++;
        if (one.params !== own) counts.shared++;
      } else counts.dropped++;
    };
  };
}

/** A statement some results of one record need, and whether one of them was read. */
interface Shared<R> {
  wanted: boolean;
  run?: Promise<R>;
  /** The parameters it ran with (encoded): a keyed statement's serve results of others. */
  params?: string;
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
