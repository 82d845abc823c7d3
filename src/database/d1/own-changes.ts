import { isRead } from "../analysis/writes.ts";
import type { D1QueriesLike, D1StatementLike } from "./binding.ts";

/**
 * D1's `meta.changes` counts the rows a statement's triggers write as well (capture's
 * triggers add one change-table row per changed row, so an update of 2 rows reports 4);
 * SQLite's `changes()` counts the statement's own rows only. Asked right after the write in
 * the same batch (one connection, one transaction), it corrects the count at no extra round
 * trip.
 */
const OWN_CHANGES = "SELECT changes() AS n";

type D1Result = { results: unknown[]; meta?: { changes?: number } };

/** A write's statement, sent with OWN_CHANGES when it runs. */
const WRITE = Symbol("edgecache.d1.write");

interface CountedStatement extends D1StatementLike {
  readonly [WRITE]: D1StatementLike;
}

function isCounted(statement: D1StatementLike): statement is CountedStatement {
  return WRITE in statement;
}

/**
 * Runs `statements` in one batch, each write followed by `SELECT changes()`, and gives each
 * write's result its own count as `meta.changes`.
 */
export async function batchCounted(
  db: D1QueriesLike,
  statements: readonly D1StatementLike[],
): Promise<D1Result[]> {
  const sent: D1StatementLike[] = [];
  const writes: boolean[] = [];
  for (const statement of statements) {
    const write = isCounted(statement);
    sent.push(write ? statement[WRITE] : statement);
    if (write) sent.push(db.prepare(OWN_CHANGES));
    writes.push(write);
  }
  const results = (await db.batch(sent)) as D1Result[];
  const out: D1Result[] = [];
  let k = 0;
  for (const write of writes) {
    const result = results[k++]!;
    if (!write) {
      out.push(result);
      continue;
    }
    const own = (results[k++]?.results[0] as { n?: unknown } | undefined)?.n;
    out.push(
      typeof own === "number" ? { ...result, meta: { ...result.meta, changes: own } } : result,
    );
  }
  return out;
}

/** One write run with its own count (see OWN_CHANGES). */
export async function runCounted(db: D1QueriesLike, statement: D1StatementLike): Promise<D1Result> {
  const [result] = await batchCounted(db, [
    isCounted(statement) ? statement : counted(db, statement),
  ]);
  return result!;
}

function counted(db: D1QueriesLike, statement: D1StatementLike): CountedStatement {
  const run = () => batchCounted(db, [wrapped]).then(([result]) => result!);
  const wrapped: CountedStatement = {
    [WRITE]: statement,
    bind: (...values) => counted(db, statement.bind(...values)),
    all: run,
    run,
    first: () => statement.first(),
    raw: (...args: unknown[]) =>
      (statement as unknown as { raw(...a: unknown[]): unknown }).raw(...args),
  } as CountedStatement;
  return wrapped;
}

/**
 * The binding (or a session of it) as an ORM's driver uses it, its writes' `meta.changes` the
 * statements' own counts: `run()` and `all()` of a write, and each write of a `batch`, are sent
 * with OWN_CHANGES. Everything else is the binding's own.
 */
export function countingBinding<T extends D1QueriesLike>(db: T): T {
  return new Proxy(db, {
    get(target, name) {
      if (name === "prepare") {
        return (sql: string) => {
          const statement = target.prepare(sql);
          return countsRows(sql) ? counted(target, statement) : statement;
        };
      }
      if (name === "batch") {
        return (statements: D1StatementLike[]) => batchCounted(target, statements);
      }
      if (name === "withSession") {
        const open = (target as { withSession?: (...a: unknown[]) => D1QueriesLike }).withSession;
        return open && ((...a: unknown[]) => countingBinding(open.apply(target, a)));
      }
      const value = Reflect.get(target, name, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/**
 * An insert, update or delete (a `with` before one too): `changes()` after another statement
 * (DDL, a pragma) still gives the connection's last such statement's count.
 */
export function countsRows(sql: string): boolean {
  return !isRead(sql) && /^\s*(insert|update|delete|replace|with)\b/i.test(sql);
}
