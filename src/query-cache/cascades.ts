import type { ForeignKeyAction } from "../database/schema.ts";

/**
 * Foreign keys whose actions change child rows: a statement on a parent table may change
 * rows of other tables (ON DELETE CASCADE removes a deleted article's comments), which the
 * statement does not name. A write to `T` is taken to change every table reachable from
 * `T` through such keys, transitively. For every query cache (Drizzle, Kysely, raw SQL):
 * the keys come from the database's catalog (see QueryCapture's `foreignKeys`), and an
 * adapter may declare more (Drizzle, from its tables).
 *
 * Conservative about the operation: every action counts for every statement, since an
 * insert may delete or update through its conflict clause (`ON CONFLICT DO UPDATE`,
 * `OR REPLACE`), and a child changed by SET NULL may cascade further.
 */

/** The actions that change the child rows (RESTRICT and NO ACTION only refuse). */
export const CHANGING = new Set(["CASCADE", "SET NULL", "SET DEFAULT"]);

export class Cascades {
  /** Parent -> children, from the database's catalog (replaced at each read). */
  #catalog = new Map<string, Set<string>>();
  /** Parent -> children, declared by the adapter (kept). */
  #declared = new Map<string, Set<string>>();
  /** The schemas of the tables named so far (`schema.table`), whose catalog is read. */
  #schemas = new Set<string>();

  /** The database's foreign keys, read again (see QueryCapture); names as the adapter writes them. */
  setCatalog(actions: readonly ForeignKeyAction[]): void {
    const edges = new Map<string, Set<string>>();
    for (const a of actions) {
      if (CHANGING.has(a.onDelete) || CHANGING.has(a.onUpdate)) add(edges, a.parent, a.child);
    }
    this.#catalog = edges;
  }

  /** A foreign key whose actions change `child` when `parent` changes, known otherwise. */
  declare(parent: string, child: string): void {
    this.note(parent);
    this.note(child);
    add(this.#declared, parent, child);
  }

  /** Schemas of the tables named so far, for the catalog's reads (PostgreSQL). */
  schemas(): string[] {
    return [...this.#schemas];
  }

  /** `tables` and every table a change of theirs may change through foreign keys. */
  reach(tables: readonly string[]): string[] {
    for (const t of tables) this.note(t);
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

  /** A table named: its schema's foreign keys are read from the catalog (PostgreSQL). */
  note(table: string): void {
    const dot = table.indexOf(".");
    if (dot > 0) this.#schemas.add(table.slice(0, dot));
  }
}

function add(edges: Map<string, Set<string>>, parent: string, child: string): void {
  const children = edges.get(parent) ?? new Set<string>();
  children.add(child);
  edges.set(parent, children);
}
