/** The part of a D1 binding (`D1Database`) this source uses; no Cloudflare type needed. */
export interface D1DatabaseLike extends D1QueriesLike {
  /** D1's Sessions API (read replication); a binding without it is read at its primary. */
  withSession?(constraintOrBookmark?: string): D1SessionLike;
}
/** What a database and a session both take: statements, alone or in one batch. */
export interface D1QueriesLike {
  prepare(sql: string): D1StatementLike;
  batch(statements: D1StatementLike[]): Promise<{ results: unknown[] }[]>;
}
/** A D1 session: its queries are at or after the bookmark it was opened with. */
export interface D1SessionLike extends D1QueriesLike {
  /** The newest bookmark a query of the session answered at; null before any. */
  getBookmark(): string | null;
}
export interface D1StatementLike {
  bind(...values: unknown[]): D1StatementLike;
  all(): Promise<{ results: unknown[]; meta?: { changes?: number } }>;
  first(): Promise<unknown>;
}
