import { existsSync } from "node:fs";
import { defineCommand } from "citty";
import type { CaptureStatus, CapturingSource } from "../core/capture.ts";
import { EdgecacheError } from "../core/errors.ts";
import { isPostgresUrl, postgresSource, redactUrl } from "../sources/postgres.ts";
import type { Source } from "../sources/source.ts";
import { sqliteSource } from "../sources/sqlite.ts";
import { envVar } from "./environment.ts";
import { friendly } from "./friendly.ts";

/**
 * `edgecache capture install|uninstall|status --db <path or URL>`: change capture's
 * triggers and change table, installed in the database itself (see core/capture.ts). A
 * running node picks an installation up within 100 ms; no restart.
 */

const DB_ARG = {
  db: {
    type: "string",
    description: "SQLite file or postgres:// URL (default: DATABASE_URL, or ./edgecache.db)",
  },
  json: { type: "boolean", description: "Print the status as JSON" },
} as const;

function friendlyWith(
  db: string | undefined,
  work: (source: Source & CapturingSource, shown: string) => Promise<void>,
): Promise<void> {
  return friendly(() => withSource(db, work));
}

async function withSource<T>(
  db: string | undefined,
  work: (source: Source & CapturingSource, shown: string) => Promise<T>,
): Promise<T> {
  const database = db || envVar("DATABASE_URL") || "edgecache.db";
  if (!isPostgresUrl(database) && !existsSync(database)) {
    throw new EdgecacheError("E_BAD_OPTION", "capture", `no SQLite file at ${database}`);
  }
  const source = isPostgresUrl(database)
    ? await postgresSource({ url: database, max: 1 })
    : sqliteSource({ path: database, readonly: false });
  try {
    return await work(source, isPostgresUrl(database) ? redactUrl(database) : database);
  } finally {
    await source.close();
  }
}

function print(status: CaptureStatus, shown: string, json: boolean | undefined): void {
  if (json) {
    console.log(JSON.stringify({ database: shown, ...status }));
    return;
  }
  if (!status.installed) {
    console.log(`capture: not installed in ${shown}`);
    return;
  }
  console.log(`capture: installed in ${shown}`);
  console.log(`tables:  ${status.tables.join(", ") || "(none)"}`);
  if (status.missing.length > 0) {
    console.log(
      `missing: ${status.missing.join(", ")} (created after the install: run install again)`,
    );
  }
  console.log(`backlog: ${status.backlog} change(s) not yet applied`);
}

const install = defineCommand({
  meta: { name: "install", description: "Add capture triggers and the change table" },
  args: DB_ARG,
  run: ({ args }) =>
    friendlyWith(args.db, async (source, shown) =>
      print(await source.installCapture(), shown, args.json),
    ),
});

const uninstall = defineCommand({
  meta: { name: "uninstall", description: "Drop capture triggers and the change table" },
  args: DB_ARG,
  run: ({ args }) =>
    friendlyWith(args.db, async (source, shown) => {
      await source.uninstallCapture();
      print(await source.captureStatus(), shown, args.json);
    }),
});

const status = defineCommand({
  meta: { name: "status", description: "Show what is installed and the backlog" },
  args: DB_ARG,
  run: ({ args }) =>
    friendlyWith(args.db, async (source, shown) =>
      print(await source.captureStatus(), shown, args.json),
    ),
});

export const capture = defineCommand({
  meta: {
    name: "capture",
    description:
      "Change capture: invalidate on writes made around edgecache (psql, jobs, migrations)",
  },
  subCommands: { install, uninstall, status },
});
