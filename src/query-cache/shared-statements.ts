import type { LogPosition } from "../core/change-log/contract.ts";
import type { Entering } from "../database/analysis/group-rows.ts";
import { linkedRowsStatement } from "../database/analysis/group-statements.ts";
import { identity, type Presence } from "../database/analysis/groups.ts";
import { type MemberRows, memberColumns, type Outside } from "../database/analysis/memberships.ts";
import { resultRows } from "../database/analysis/shapes.ts";
import { encode } from "./codec.ts";
import type { ResultForm } from "./statement-contract.ts";
import type { GroupCounts } from "./stats.ts";

/**
 * The statements a record's group patches share (group-patches.ts): each run once for every
 * result of the record that needs it, by its text, and kept for the jobs that follow that
 * record after being overtaken (by the record's position, the most recent RECENT_RECORDS).
 */

/**
 * Most rows read of a presence's table for one link value (a new article's author's
 * followers): past it, the results that asked are dropped or run their own statement.
 */
const MOST_LINKED = 1_000;

/**
 * Results a shared statement may keep (a membership's read, a keyed statement), past which
 * it runs though none of them was read since it was stored (see worthReading).
 */
const SHARED_WORTH = 3;

/**
 * Records whose shared statements are kept, the most recently asked: those that follow a
 * record come within a few records of it (see group-patches.ts, `keep`).
 */
const RECENT_RECORDS = 16;

type Asked = NonNullable<Entering["asked"]>[number];
type Linked = NonNullable<Entering["linked"]>;
/** A record's shared statements, by their text. */
type Statements<R> = Map<string, Shared<R>>;

/** The shared statements of recent records, run on the database group patches use. */
export function sharedStatements<R>(deps: {
  /** Runs a statement the cache wrote (see StatementDatabase's `query`). */
  query(sql: string, params: readonly unknown[]): Promise<R>;
  form: ResultForm<R>;
  counts: GroupCounts;
  fault(err: unknown): void;
}) {
  // By the record's position: the jobs that follow that record share them too.
  const records = new Map<string, Statements<R>>();
  const counts = deps.counts;
  /**
   * The rows `statement` reads as objects of `columns`, run once for the record's results
   * (`statements`); undefined where it failed or read more than MOST_LINKED rows.
   */
  const readRows = async (
    statement: { sql: string; params: unknown[] },
    columns: readonly string[],
    statements: Statements<R>,
  ): Promise<Record<string, unknown>[] | undefined> => {
    const text = encode(["linked", statement.sql]);
    const one = statements.get(text) ?? { wanted: true };
    statements.set(text, one);
    if (!one.run) {
      counts.statements++;
      one.run = deps.query(statement.sql, statement.params);
    }
    let rows: readonly unknown[] | undefined;
    try {
      rows = resultRows(deps.form.kept(await one.run));
    } catch (err) {
      deps.fault(err);
    }
    if (!rows || rows.length > MOST_LINKED) return undefined;
    return rows.map((r) =>
      Array.isArray(r)
        ? Object.fromEntries(columns.map((c, i) => [c, r[i]]))
        : (r as Record<string, unknown>),
    );
  };
  /**
   * The rows of each asked presence's table for its link value, one statement each, shared
   * by the record's results (`statements`); undefined where one cannot be read or has more
   * than MOST_LINKED rows.
   */
  const linkedRows = async (
    asked: readonly Asked[],
    sql: string,
    statements: Statements<R>,
  ): Promise<Linked | undefined> => {
    const linked = new Map<Presence, Map<string, Record<string, unknown>[]>>();
    for (const { presence, link } of asked) {
      const id = identity(link);
      const byLink = linked.get(presence) ?? new Map<string, Record<string, unknown>[]>();
      linked.set(presence, byLink);
      if (id === undefined) return undefined;
      if (byLink.has(id)) continue;
      const filters = presence.filters.map((f) => f.column);
      const statement = linkedRowsStatement(sql, presence, filters, [link], MOST_LINKED);
      const rows =
        statement && (await readRows(statement, [presence.column, ...filters], statements));
      if (!rows) return undefined;
      byLink.set(id, rows);
    }
    return linked;
  };
  /**
   * The reads of each membership's table for the written base values (see memberships.ts),
   * each marked in the record's `statements` as wanted where this result was read since it
   * was stored; undefined where one cannot be written.
   */
  const memberReads = (
    outside: Outside,
    sql: string,
    statements: Statements<R>,
    wanted: boolean,
    counting: boolean,
  ) => {
    const reads: MemberRead[] = [];
    const add = (of: MemberRead["of"], table: string, columns: string[], values: unknown[]) => {
      if (values.length === 0) {
        reads.push({ of, columns });
        return true;
      }
      const [column, ...others] = columns;
      const link = { table, column: column! };
      const statement = linkedRowsStatement(sql, link, others, values, MOST_LINKED);
      if (!statement) return false;
      const one = needed(statements, encode(["linked", statement.sql]), wanted);
      reads.push({ of, columns, statement, shared: one });
      return true;
    };
    for (const { member, values } of outside.reads) {
      if (!add(member, member.table, memberColumns(member), values)) return undefined;
    }
    // The base rows that name a written parent's key.
    for (const parent of outside.parents) {
      const { join, values } = parent;
      const columns = join.from === outside.key ? [join.from] : [join.from, outside.key];
      if (!add(parent, outside.base, columns, values)) return undefined;
    }
    // A count's parents, whether they have a row for the written rows (count deltas).
    for (const parent of counting ? (outside.exists ?? []) : []) {
      if (!add(parent, parent.join.table, [parent.join.column], parent.values)) return undefined;
    }
    return reads;
  };
  /**
   * The rows `reads` find, where each is worth reading for the results that need it, or
   * the result is `followed` (see group-patches.ts, `worth`); else undefined.
   */
  const memberRows = async (
    reads: readonly MemberRead[],
    statements: Statements<R>,
    followed: boolean,
  ): Promise<MemberRows | undefined> => {
    if (!followed && reads.some((r) => r.shared && !worthReading(r.shared))) return undefined;
    const found = new Map<MemberRead["of"], readonly Record<string, unknown>[]>();
    for (const { of, columns, statement } of reads) {
      const rows = statement ? await readRows(statement, columns, statements) : [];
      if (!rows) return undefined;
      found.set(of, rows);
    }
    return found;
  };
  /**
   * The rows of a statement shared by a record's results, run once (with the parameters of
   * the first that asks, `params` encoded); undefined where it failed.
   */
  const sharedRows = async (
    shared: Shared<R>,
    statement: { sql: string; params: readonly unknown[] },
    params: string,
  ) => {
    if (!shared.run) {
      shared.params = params;
      counts.statements++;
      shared.run = deps.query(statement.sql, statement.params);
    }
    try {
      return resultRows(deps.form.kept(await shared.run));
    } catch (err) {
      deps.fault(err);
      return undefined;
    }
  };
  /**
   * A shared statement's rows as `merge` merges them into a result's (where `merging`):
   * as `one` read them; else with the rows of the presence tables `merge` asked for, for
   * the new rows' links (their per-viewer flags); else, where `alone` allows, as the
   * statement reads with this result's own parameters (`own`). `fresh`: the rows read last.
   */
  const mergedFrom = async <M>(
    one: Shared<R>,
    statement: { sql: string; params: readonly unknown[] },
    own: string,
    how: { sql: string; statements: Statements<R>; alone: boolean; merging: boolean },
    merge: (
      rows: readonly unknown[],
      from: Shared<R>,
      asked: Asked[],
      linked?: Linked,
    ) => M | undefined,
  ) => {
    const asked: Asked[] = [];
    let source = one;
    let fresh = await sharedRows(one, statement, own);
    if (!how.merging) return { merged: undefined, source, fresh };
    let merged = fresh && merge(fresh, one, asked);
    if (!merged && fresh && asked.length > 0) {
      const linked = await linkedRows(asked, how.sql, how.statements);
      merged = linked && merge(fresh, one, asked, linked);
    }
    if (!merged && how.alone && one.params !== own) {
      const text = encode([statement.sql, statement.params]);
      source = how.statements.get(text) ?? { wanted: true };
      how.statements.set(text, source);
      fresh = await sharedRows(source, statement, own);
      merged = fresh && merge(fresh, source, asked);
    }
    return { merged: merged || undefined, source, fresh };
  };
  const recordStatements = (at: LogPosition) => {
    const name = `${at.log}:${at.seq}`;
    const statements: Statements<R> = records.get(name) ?? new Map();
    records.delete(name);
    records.set(name, statements);
    if (records.size > RECENT_RECORDS) records.delete(records.keys().next().value!);
    return statements;
  };
  return { recordStatements, memberReads, memberRows, sharedRows, mergedFrom };
}

/**
 * A read of a membership's table, or of the base rows naming a written parent (none where
 * no written value can be in it).
 */
export interface MemberRead {
  of: object;
  columns: string[];
  statement?: { sql: string; params: unknown[] };
  shared?: Shared<unknown>;
}

/** A statement some results of one record need, and whether one of them was read. */
export interface Shared<R> {
  wanted: boolean;
  run?: Promise<R>;
  /** How many results of the record need it (a shared statement; see worthReading). */
  results?: number;
  /** The parameters it ran with (encoded): a keyed statement's serve results of others. */
  params?: string;
}

/**
 * A statement of the record's (`statements`, by its text) one more result needs, marked
 * wanted where that result was read since it was stored.
 */
export function needed<R>(statements: Statements<R>, text: string, wanted: boolean): Shared<R> {
  const one = statements.get(text) ?? { wanted: false };
  one.wanted ||= wanted;
  one.results = (one.results ?? 0) + 1;
  statements.set(text, one);
  return one;
}

/**
 * Whether a statement shared by a record's results (a membership's read, a keyed statement)
 * is worth running: one of the results it may keep was read since it was stored, or it
 * may keep SHARED_WORTH of them, some of which a read will likely come to before the next
 * write.
 */
export function worthReading(shared: Shared<unknown>): boolean {
  return shared.wanted || (shared.results ?? 0) >= SHARED_WORTH;
}
