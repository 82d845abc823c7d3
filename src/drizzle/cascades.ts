import type { ForeignKeyAction } from "../sql/schema.ts";
import { tableName } from "./tables.ts";

/**
 * Foreign keys whose actions change child rows: a statement on a parent table may change
 * rows of other tables (ON DELETE CASCADE removes a deleted article's comments), which
 * Drizzle does not name (its mutation names its own table). A mutation of `T` is taken to
 * change every table reachable from `T` through such keys, transitively.
 *
 * Conservative about the operation: every action counts for every statement, since an
 * insert may delete or update through its conflict clause (`ON CONFLICT DO UPDATE`,
 * `OR REPLACE`), and a child changed by SET NULL may cascade further.
 */

/** The actions that change the child rows (RESTRICT and NO ACTION only refuse). */
const CHANGING = new Set(["CASCADE", "SET NULL", "SET DEFAULT"]);

// Drizzle's symbols are registered globally (`Symbol.for`): read without importing drizzle-orm.
const ENTITY_KIND = Symbol.for("drizzle:entityKind");
const COLUMNS = Symbol.for("drizzle:Columns");
const EXTRA_CONFIG = Symbol.for("drizzle:ExtraConfigBuilder");
const INLINE_FOREIGN_KEYS = [
  Symbol.for("drizzle:SQLiteInlineForeignKeys"),
  Symbol.for("drizzle:PgInlineForeignKeys"),
  Symbol.for("drizzle:MySqlInlineForeignKeys"),
];

/** A Drizzle foreign key (`.references(...)` or `foreignKey(...)`), as far as it is read. */
interface DrizzleForeignKey {
  reference(): { foreignTable: object };
  onDelete?: string;
  onUpdate?: string;
}

export class Cascades {
  /** Parent -> children, from the database's catalog (replaced at each read). */
  #catalog = new Map<string, Set<string>>();
  /** Parent -> children, from the Drizzle tables the cache has seen (kept). */
  #declared = new Map<string, Set<string>>();
  #seen = new WeakSet<object>();
  /** The schemas of the tables named so far (`schema.table`), whose catalog is read. */
  #schemas = new Set<string>();

  /** The database's foreign keys, read again (see QueryCapture); names as Drizzle writes them. */
  setCatalog(actions: readonly ForeignKeyAction[]): void {
    const edges = new Map<string, Set<string>>();
    for (const a of actions) {
      if (CHANGING.has(a.onDelete) || CHANGING.has(a.onUpdate)) add(edges, a.parent, a.child);
    }
    this.#catalog = edges;
  }

  /**
   * A Drizzle table's own foreign keys (as `getTableConfig` reads them), for databases whose
   * catalog is out of reach (a client capture does not know). Only tables the cache has seen
   * teach it: a child table no query used is not known this way.
   */
  learn(table: object): void {
    if (this.#seen.has(table)) return;
    this.#seen.add(table);
    this.#note(tableName(table));
    for (const fk of drizzleForeignKeys(table)) {
      const actions = [fk.onDelete, fk.onUpdate].map((a) => String(a ?? "").toUpperCase());
      if (!actions.some((a) => CHANGING.has(a))) continue;
      try {
        add(this.#declared, tableName(fk.reference().foreignTable), tableName(table));
      } catch {
        // A reference Drizzle cannot resolve (a table defined later, a bad callback): skipped.
      }
    }
  }

  /** Schemas of the tables named so far, for the catalog's reads (PostgreSQL). */
  schemas(): string[] {
    return [...this.#schemas];
  }

  /** `tables` and every table a change of theirs may change through foreign keys. */
  reach(tables: readonly string[]): string[] {
    for (const t of tables) this.#note(t);
    const out = new Set(tables);
    const todo = [...tables];
    for (let t = todo.pop(); t !== undefined; t = todo.pop()) {
      for (const edges of [this.#catalog, this.#declared]) {
        for (const child of edges.get(t) ?? []) {
          if (out.has(child)) continue;
          out.add(child);
          todo.push(child);
        }
      }
    }
    return [...out];
  }

  #note(table: string): void {
    const dot = table.indexOf(".");
    if (dot > 0) this.#schemas.add(table.slice(0, dot));
  }
}

function add(edges: Map<string, Set<string>>, parent: string, child: string): void {
  const children = edges.get(parent) ?? new Set<string>();
  children.add(child);
  edges.set(parent, children);
}

/** The foreign keys of a Drizzle table: inline ones, then those of its extra config. */
function drizzleForeignKeys(table: object): DrizzleForeignKey[] {
  const t = table as Record<symbol, unknown>;
  const out: DrizzleForeignKey[] = [];
  for (const symbol of INLINE_FOREIGN_KEYS) {
    const inline = t[symbol];
    if (Array.isArray(inline)) out.push(...(inline as DrizzleForeignKey[]));
  }
  const extra = t[EXTRA_CONFIG];
  if (typeof extra !== "function") return out;
  try {
    const config = extra(t[COLUMNS]) as unknown;
    const values = Array.isArray(config) ? config.flat(1) : Object.values(config ?? {});
    for (const builder of values as { build?: (table: object) => unknown }[]) {
      const kind = (builder?.constructor as unknown as Record<symbol, unknown> | undefined)?.[
        ENTITY_KIND
      ];
      if (typeof kind === "string" && kind.endsWith("ForeignKeyBuilder") && builder.build) {
        out.push(builder.build(table) as DrizzleForeignKey);
      }
    }
  } catch {
    // An extra config that throws outside Drizzle's own call: its foreign keys stay unknown.
  }
  return out;
}
