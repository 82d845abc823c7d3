import type { SqlClient } from "../client.ts";

/**
 * How PostgreSQL finds a table named without its schema: in the first schema of the
 * session's effective search path that holds a relation of that name (`$user` expanded,
 * schemas that do not exist left out, `pg_catalog` first unless the path places it). A
 * session's temporary schema is left out: a temporary table is its connection's alone.
 */

/**
 * Every relation a bare name may reach, with its schema, the last schema of the path first:
 * read in order, the first schema holding a name is the one kept.
 */
export const SEARCH_PATH_SQL = `SELECT p.schema AS schema, c.relname AS name
  FROM unnest(current_schemas(true)) WITH ORDINALITY AS p(schema, position)
  JOIN pg_namespace n ON n.nspname = p.schema
  JOIN pg_class c ON c.relnamespace = n.oid
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND p.schema NOT LIKE 'pg\\_temp\\_%'
  ORDER BY p.position DESC`;

/** The schema each bare name reaches, as one session's search path resolves it. */
export type SearchPath = ReadonlyMap<string, string>;

/** The search path of `client`'s session (a pool's: any of its connections, set alike). */
export async function readSearchPath(client: Pick<SqlClient, "run">): Promise<SearchPath> {
  const { rows } = await client.run(SEARCH_PATH_SQL, []);
  const path = new Map<string, string>();
  for (const r of rows) path.set(String(r.name), String(r.schema));
  return path;
}

/**
 * The schema holding the table `name` (as a statement spells it, unqualified), or undefined
 * when no schema of the path does. An unquoted name is folded to lower case by PostgreSQL;
 * the parser keeps its spelling, so the exact name is looked for first, then the folded one.
 */
export function schemaOf(path: SearchPath, name: string): string | undefined {
  return path.get(name) ?? path.get(name.toLowerCase());
}

/**
 * Statements that change how a session resolves bare names: its search path (`SET`,
 * `set_config`, `RESET`), or its role (`$user` in the path), or everything (`DISCARD ALL`).
 * Matched on the text, so a literal that mentions one counts too (only ever more careful).
 */
export const CHANGES_SEARCH_PATH =
  /\bsearch_path\b|\bset\s+(?:session\s+|local\s+)?role\b|\bsession\s+authorization\b|\breset\s+(?:all|role)\b|\bdiscard\s+all\b/i;
