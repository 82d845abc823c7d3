/**
 * The stale-read oracle of the workload benchmark. It hears of every write the driver
 * issues and of its acknowledgement, and judges each read against what had been
 * acknowledged before the read began:
 *
 * - a row shown with a version older than the last acknowledged one, or a row whose
 *   delete was acknowledged, is stale;
 * - an item answered 404 although the row existed and no write to it overlapped the read;
 * - a list that leaves out a row that matches its filter and that its window includes
 *   (an insert, or an update that moved the row in), when no write to that row overlapped
 *   the read; for the join view, a user whose orders array leaves out such an order.
 *
 * Writes still in flight while a read runs may or may not show: the oracle never judges a
 * row while a write to it overlaps the read. It shares no code with the engine it checks:
 * filters and sort orders are evaluated here again, for the query shapes the workload
 * makes (equality, prefix, sort keys).
 */

export type Table = "users" | "orders";
export type Row = Record<string, unknown>;

export interface ListSpec {
  kind: "list";
  table: Table;
  /** The join view (users with their orders): base rows are users. */
  view?: boolean;
  filter?: { column: string; op: "eq" | "prefix"; value: string };
  /** Including the primary key as the last tie-breaker. */
  sort: { column: string; desc: boolean }[];
  limit: number;
  offset: number;
}

export interface ItemSpec {
  kind: "item";
  table: Table;
  view?: boolean;
  id: string;
}

export type ReadSpec = ListSpec | ItemSpec;

export interface Finding {
  reason: "old-version" | "deleted-row" | "missing-row" | "missing-item";
  table: Table;
  id: string;
}

/** A row's state after an acknowledged write; undefined while the outcome is unknown. */
interface RowState {
  deleted: boolean;
  version: number;
  values: Row;
}

interface WriteRecord {
  issuedAt: number;
  ackedAt: number | undefined;
  /** Undefined until acknowledged; `"unknown"` when the write failed with no answer. */
  state: RowState | "unknown" | undefined;
}

export interface WriteToken {
  table: Table;
  id: string;
  record: WriteRecord;
}

export class StaleOracle {
  /** Per table and id, the writes of this run in the order they were issued. */
  #history: Record<Table, Map<string, WriteRecord[]>> = { users: new Map(), orders: new Map() };
  #initial: Record<Table, Set<string>>;

  /** `initial`: the ids each table holds when the run begins (all at version 1). */
  constructor(initial: Record<Table, Iterable<string>>) {
    this.#initial = { users: new Set(initial.users), orders: new Set(initial.orders) };
  }

  /** A write to one row is about to be sent (one token per row it changes). */
  issued(table: Table, id: string, at: number): WriteToken {
    const record: WriteRecord = { issuedAt: at, ackedAt: undefined, state: undefined };
    const list = this.#history[table].get(id);
    if (list) list.push(record);
    else this.#history[table].set(id, [record]);
    return { table, id, record };
  }

  /** The write was acknowledged at `at`; the row is now `row` (version included), or gone. */
  acked(token: WriteToken, at: number, row: Row | undefined): void {
    token.record.ackedAt = at;
    token.record.state = row
      ? { deleted: false, version: Number(row.version), values: row }
      : { deleted: true, version: Number.POSITIVE_INFINITY, values: {} };
  }

  /** The write failed without telling what happened: the row is never judged again. */
  failed(token: WriteToken, at: number): void {
    token.record.ackedAt = at;
    token.record.state = "unknown";
  }

  /** The version the next update of the row should carry (its last acknowledged + 1). */
  nextVersion(table: Table, id: string): number {
    const last = this.#lastAcked(table, id, Number.POSITIVE_INFINITY);
    return (last && last !== "unknown" ? last.version : 1) + 1;
  }

  /**
   * Judges one read that was sent at `startedAt` and answered at `endedAt` with `status`
   * and the parsed JSON `body`. Returns what was stale in it; empty when nothing was.
   */
  judge(
    spec: ReadSpec,
    startedAt: number,
    endedAt: number,
    status: number,
    body: unknown,
  ): Finding[] {
    const findings: Finding[] = [];
    const base: Table = spec.view ? "users" : spec.table;
    if (spec.kind === "item") {
      if (status === 404) {
        if (this.#existedThroughout(base, spec.id, startedAt, endedAt)) {
          findings.push({ reason: "missing-item", table: base, id: spec.id });
        }
        return findings;
      }
      if (status !== 200) return findings;
      this.#checkRows(base, [body as Row], startedAt, findings);
      if (spec.view) this.#checkOrders([body as Row], startedAt, endedAt, findings);
      return findings;
    }
    if (status !== 200) return findings;
    const rows = ((body as { data?: Row[] }).data ?? []) as Row[];
    this.#checkRows(base, rows, startedAt, findings);
    this.#checkMissing(spec, base, rows, startedAt, endedAt, findings);
    if (spec.view) this.#checkOrders(rows, startedAt, endedAt, findings);
    return findings;
  }

  // --- internals ---------------------------------------------------------------------

  /** Shown rows: none may be older than its last acknowledged write, nor deleted. */
  #checkRows(table: Table, rows: Row[], startedAt: number, findings: Finding[]): void {
    for (const row of rows) {
      const id = String(row.id);
      const last = this.#lastAcked(table, id, startedAt);
      if (!last || last === "unknown") continue;
      if (last.deleted) findings.push({ reason: "deleted-row", table, id });
      else if (Number(row.version) < last.version) {
        findings.push({ reason: "old-version", table, id });
      }
    }
  }

  /**
   * Rows written in this run that match the list's filter and whose state held through the
   * read must be in the response wherever its window reaches over them: between two shown
   * rows, or before the first when the window starts at offset 0, or after the last when
   * the window is not full.
   */
  #checkMissing(
    spec: ListSpec,
    table: Table,
    rows: Row[],
    startedAt: number,
    endedAt: number,
    findings: Finding[],
  ): void {
    const shown = new Set(rows.map((r) => String(r.id)));
    const full = rows.length >= spec.limit;
    for (const [id, state] of this.#settled(table, startedAt, endedAt)) {
      if (shown.has(id) || !matches(state.values, spec.filter)) continue;
      const before = spec.offset === 0 || rows.some((r) => compare(r, state.values, spec.sort) < 0);
      const after = !full || rows.some((r) => compare(r, state.values, spec.sort) > 0);
      if (before && after) findings.push({ reason: "missing-row", table, id });
    }
  }

  /** The join view: every user's orders array, shown orders and missing ones. */
  #checkOrders(users: Row[], startedAt: number, endedAt: number, findings: Finding[]): void {
    const settled = [...this.#settled("orders", startedAt, endedAt)];
    for (const user of users) {
      const orders = Array.isArray(user.orders) ? (user.orders as Row[]) : [];
      this.#checkRows("orders", orders, startedAt, findings);
      const shown = new Set(orders.map((o) => String(o.id)));
      for (const [id, state] of settled) {
        if (state.values.userId === user.id && !shown.has(id)) {
          findings.push({ reason: "missing-row", table: "orders", id });
        }
      }
    }
  }

  /** Rows written in this run, present, and not written during [startedAt, endedAt]. */
  *#settled(table: Table, startedAt: number, endedAt: number): Generator<[string, RowState]> {
    for (const [id, writes] of this.#history[table]) {
      if (!this.#untouched(writes, startedAt, endedAt)) continue;
      const last = lastAckedOf(writes, startedAt);
      if (last && last !== "unknown" && !last.deleted) yield [id, last];
    }
  }

  #existedThroughout(table: Table, id: string, startedAt: number, endedAt: number): boolean {
    const writes = this.#history[table].get(id) ?? [];
    if (!this.#untouched(writes, startedAt, endedAt)) return false;
    const last = lastAckedOf(writes, startedAt);
    if (last === "unknown") return false;
    return last ? !last.deleted : this.#initial[table].has(id);
  }

  /** No write overlapped the read: each was acknowledged before it began or sent after it. */
  #untouched(writes: WriteRecord[], startedAt: number, endedAt: number): boolean {
    return writes.every(
      (w) => (w.ackedAt !== undefined && w.ackedAt < startedAt) || w.issuedAt > endedAt,
    );
  }

  #lastAcked(table: Table, id: string, before: number): RowState | "unknown" | undefined {
    return lastAckedOf(this.#history[table].get(id) ?? [], before);
  }
}

function lastAckedOf(writes: WriteRecord[], before: number): RowState | "unknown" | undefined {
  // Writes to one row are serialized by the driver, so the last acknowledged is the newest.
  for (let i = writes.length - 1; i >= 0; i--) {
    const w = writes[i]!;
    if (w.ackedAt !== undefined && w.ackedAt < before && w.state !== undefined) return w.state;
  }
  return undefined;
}

function matches(values: Row, filter: ListSpec["filter"]): boolean {
  if (!filter) return true;
  const v = values[filter.column];
  if (filter.op === "prefix") return typeof v === "string" && v.startsWith(filter.value);
  return v === filter.value || (typeof v === "number" && v === Number(filter.value));
}

/**
 * The list's order: numbers numerically, text by UTF-16 code unit (the same as code point
 * order for the ASCII data the workload writes); `desc` reverses a key.
 */
function compare(a: Row, b: Row, sort: ListSpec["sort"]): number {
  for (const { column, desc } of sort) {
    const x = a[column];
    const y = b[column];
    let c = 0;
    if (typeof x === "number" && typeof y === "number") c = x - y;
    else {
      const sx = String(x);
      const sy = String(y);
      c = sx < sy ? -1 : sx > sy ? 1 : 0;
    }
    if (c !== 0) return desc ? -c : c;
  }
  return 0;
}
