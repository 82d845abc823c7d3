import type { Row } from "../core/data/query.ts";
import type { WriteEvent } from "../core/deps/planner.ts";
import type { Dialect, Statement, Steps } from "../database/dialect.ts";
import { type ForeignKey, quote, type ServedTable, type SqlColumn } from "../database/schema.ts";

/**
 * What a write changes beyond its own row, whatever the dialect: the rows foreign key
 * actions change on a delete (read in the delete's transaction, or planned as one batch
 * where there is none), and the tables triggers, ON UPDATE actions and conflict
 * resolution may change.
 */

/** A row foreign key actions will change, read before the delete. */
export interface Referencing {
  table: string;
  row: Row;
}

/** A foreign key action of a batched delete: the query of the rows it changes (the key bound). */
export interface Acted {
  fk: ForeignKey;
  statement: Statement;
  /** False when its rows cannot be told apart from another path's (see actedOnByDelete). */
  images: boolean;
}

/**
 * Rows of other tables whose foreign keys point at `parentRow` with an ON DELETE action,
 * followed transitively through cascades; locked where the dialect locks rows, so they
 * stay as read until the delete commits.
 */
export function* referencing<C extends SqlColumn, T extends ServedTable<C>>(
  d: Dialect<C, T>,
  tables: Map<string, T>,
  fks: Map<string, ForeignKey[]>,
  table: string,
  parentRow: Row,
  seen: Set<string>,
): Steps<Referencing[]> {
  const out: Referencing[] = [];
  for (const fk of fks.get(table) ?? []) {
    if (fk.onDelete === "NO ACTION" || fk.onDelete === "RESTRICT") continue;
    // The parent's referenced column may differ from its primary key.
    const parentValue = parentRow[fk.to];
    if (parentValue === undefined || parentValue === null) continue;
    const child = tables.get(fk.table)!;
    const rows = yield {
      sql: `SELECT ${d.selectList(child)} FROM ${d.tableName(child)} WHERE ${quote(fk.from)} = ${d.placeholder(1, child.columns.get(fk.from))}${d.lock}`,
      params: [d.bind(parentValue)],
    };
    for (const row of rows) {
      const id = `${fk.table}#${String(row[child.pk.name])}`;
      if (seen.has(id)) continue;
      seen.add(id);
      out.push({ table: fk.table, row });
      if (fk.onDelete === "CASCADE") {
        out.push(...(yield* referencing(d, tables, fks, fk.table, row, seen)));
      }
    }
  }
  return out;
}

/**
 * What foreign key actions do when the row of `table` matching `where` (one parameter:
 * the key) is deleted: for each action, a query of the rows it changes, followed through
 * cascades. A table met again on the way (a cycle, a table reached twice) cannot be
 * followed further by queries: its rows are then reported as changed without images.
 */
export function actedOnByDelete<C extends SqlColumn, T extends ServedTable<C>>(
  d: Dialect<C, T>,
  tables: Map<string, T>,
  fks: Map<string, ForeignKey[]>,
  table: T,
  where: string,
  seen = new Set<string>(),
): Acted[] {
  const out: Acted[] = [];
  for (const fk of fks.get(table.info.name) ?? []) {
    if (fk.onDelete === "NO ACTION" || fk.onDelete === "RESTRICT") continue;
    const child = tables.get(fk.table)!;
    const childWhere = `${quote(fk.from)} IN (SELECT ${quote(fk.to)} FROM ${d.tableName(table)} WHERE ${where})`;
    const again = seen.has(fk.table);
    seen.add(fk.table);
    const sql = `SELECT ${d.selectList(child)} FROM ${d.tableName(child)} WHERE ${childWhere}`;
    out.push({ fk, statement: { sql, params: [] }, images: !again });
    if (fk.onDelete === "CASCADE" && !again) {
      out.push(...actedOnByDelete(d, tables, fks, child, childWhere, seen));
    }
  }
  return out;
}

/** The write events of a batched delete's foreign key actions, from the rows read before it. */
export function cascadedOf<T extends ServedTable>(
  tables: Map<string, T>,
  acted: Acted[],
  results: Row[][],
): WriteEvent[] {
  const events: WriteEvent[] = [];
  const blind = new Set<string>();
  const seen = new Set<string>();
  acted.forEach(({ fk, images }, i) => {
    const child = tables.get(fk.table);
    // SET DEFAULT: the new value is the column's default, which is not read here.
    if (!images || !child || fk.onDelete === "SET DEFAULT") {
      blind.add(fk.table);
      return;
    }
    for (const row of results[i]!) {
      const id = `${fk.table}#${String(row[child.pk.name])}`;
      if (seen.has(id)) {
        blind.add(fk.table); // two actions on one row: only the database knows the outcome
        continue;
      }
      seen.add(id);
      events.push(
        fk.onDelete === "CASCADE"
          ? { table: fk.table, op: "delete", old: row }
          : { table: fk.table, op: "update", old: row, new: { ...row, [fk.from]: null } },
      );
    }
  });
  // A table with a row not described by images: its events carry none, so they plan by table.
  return [
    ...events.filter((e) => !blind.has(e.table)),
    ...[...blind].map((t): WriteEvent => ({ table: t, op: "update" })),
  ];
}

/**
 * Tables a write may change without telling us which rows: those a trigger's text names
 * (a trigger can only name its target tables literally, so a name search finds them all),
 * ON UPDATE actions of foreign keys, and conflicting rows a REPLACE resolution deletes.
 */
export function affectedTables(
  table: string,
  op: WriteEvent["op"],
  triggerBodies: string[],
  tableNames: Iterable<string>,
  foreignKeysTo: ForeignKey[],
  replacesOnConflict: boolean,
): Set<string> {
  const out = new Set<string>();
  const names = [...tableNames];
  for (const body of triggerBodies) {
    for (const name of names) {
      const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      if (new RegExp(`(^|[^\\w])${escaped}($|[^\\w])`, "i").test(body)) out.add(name);
    }
  }
  if (op === "update") {
    for (const fk of foreignKeysTo) {
      if (!["NO ACTION", "RESTRICT"].includes(fk.onUpdate)) out.add(fk.table);
    }
  }
  if (replacesOnConflict) out.add(table);
  return out;
}
