import { defineCommand } from "citty";
import type { CaptureStatus, CapturingSource } from "../core/capture-feed.ts";
import { EdgecacheError } from "../core/errors.ts";
import type { Source } from "../sources/index.ts";
import {
  isPostgresUrl,
  postgresSource,
  redactUrl,
  sqliteFileProblem,
  sqliteSource,
} from "../sources/index.ts";
import {
  type D1Target,
  d1Install,
  d1Migration,
  d1Status,
  d1Uninstall,
  shownD1,
} from "./capture-d1.ts";
import { envVar } from "./environment.ts";
import { friendly } from "./friendly.ts";

/**
 * `edgecache capture install|uninstall|status --db <path or URL>`: change capture's
 * triggers and change table, installed in the database itself (see core/capture-feed.ts). A
 * running node picks an installation up within 100 ms; no restart. `--d1 <database>` does
 * the same in a D1 database through wrangler (capture-d1.ts), or writes a migration.
 */

const DB_ARG = {
  db: {
    type: "string",
    description: "SQLite file or postgres:// URL (default: DATABASE_URL, or ./edgecache.db)",
  },
  schema: {
    type: "string",
    description: "With a postgres:// URL: the schema whose tables are captured (default public)",
  },
  json: { type: "boolean", description: "Print the status as JSON" },
  d1: {
    type: "string",
    description: "A D1 database (name or binding in wrangler.jsonc), through wrangler d1 execute",
  },
  local: {
    type: "boolean",
    description: "With --d1: the local database of wrangler dev (default)",
  },
  remote: { type: "boolean", description: "With --d1: the database on Cloudflare" },
  "persist-to": {
    type: "string",
    valueHint: "dir",
    description: "With --d1 --local: wrangler's local state directory (default .wrangler/state)",
  },
} as const;

/** What `--d1` and its companions say, or undefined without `--d1`. */
function d1Target(args: {
  d1?: string;
  local?: boolean;
  remote?: boolean;
  "persist-to"?: string;
  db?: string;
  schema?: string;
}): D1Target | undefined {
  if (args.d1 === undefined) return undefined;
  if (args.d1 === "")
    throw new EdgecacheError("E_BAD_OPTION", "capture", "--d1: expected a database name");
  if (args.db) throw new EdgecacheError("E_BAD_OPTION", "capture", "--d1 and --db: give one");
  if (args.schema !== undefined) {
    throw new EdgecacheError("E_BAD_OPTION", "capture", "--schema: only with a postgres:// URL");
  }
  if (args.local && args.remote) {
    throw new EdgecacheError("E_BAD_OPTION", "capture", "--local and --remote: give one");
  }
  return { database: args.d1, remote: args.remote === true, persistTo: args["persist-to"] };
}

async function withSource<T>(
  args: { db?: string; schema?: string },
  work: (source: Source & CapturingSource, shown: string) => Promise<T>,
): Promise<T> {
  const database = args.db || envVar("DATABASE_URL") || "edgecache.db";
  const postgres = isPostgresUrl(database);
  if (!postgres && args.schema !== undefined) {
    throw new EdgecacheError("E_BAD_OPTION", "capture", "--schema: only with a postgres:// URL");
  }
  const problem = postgres ? undefined : sqliteFileProblem(database);
  if (problem) throw new EdgecacheError("E_BAD_OPTION", "capture", `--db: ${problem}`);
  const source = postgres
    ? await postgresSource({
        url: database,
        max: 1,
        ...(args.schema !== undefined && { schema: args.schema }),
      })
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
  if (status.outdated) console.log(`outdated: ${status.outdated} (run install again)`);
  console.log(`backlog: ${status.backlog} change(s) not yet applied`);
}

const MIGRATION_ARG = {
  migration: {
    type: "string",
    valueHint: "dir",
    description:
      "With --d1: write the statements as the next migration in this directory (for wrangler d1 migrations apply) instead of running them",
  },
} as const;

/** A migration written instead of run: says where, and what to run next. */
async function writeMigration(target: D1Target, dir: string, action: "install" | "uninstall") {
  const file = await d1Migration(target, dir, action);
  console.log(`capture: wrote ${file}`);
  console.log(
    `apply it: npx wrangler d1 migrations apply ${target.database} ${target.remote ? "--remote" : "--local"}`,
  );
}

const install = defineCommand({
  meta: { name: "install", description: "Add capture triggers and the change table" },
  args: { ...DB_ARG, ...MIGRATION_ARG },
  run: ({ args }) =>
    friendly(async () => {
      const d1 = d1Target(args);
      if (d1 === undefined) {
        await withSource(args, async (source, shown) =>
          print(await source.installCapture(), shown, args.json),
        );
      } else if (args.migration) {
        await writeMigration(d1, args.migration, "install");
      } else {
        print(await d1Install(d1), shownD1(d1), args.json);
      }
    }),
});

const uninstall = defineCommand({
  meta: { name: "uninstall", description: "Drop capture triggers and the change table" },
  args: { ...DB_ARG, ...MIGRATION_ARG },
  run: ({ args }) =>
    friendly(async () => {
      const d1 = d1Target(args);
      if (d1 === undefined) {
        await withSource(args, async (source, shown) => {
          await source.uninstallCapture();
          print(await source.captureStatus(), shown, args.json);
        });
      } else if (args.migration) {
        await writeMigration(d1, args.migration, "uninstall");
      } else {
        print(await d1Uninstall(d1), shownD1(d1), args.json);
      }
    }),
});

const status = defineCommand({
  meta: { name: "status", description: "Show what is installed and the backlog" },
  args: DB_ARG,
  run: ({ args }) =>
    friendly(async () => {
      const d1 = d1Target(args);
      if (d1 === undefined) {
        await withSource(args, async (source, shown) =>
          print(await source.captureStatus(), shown, args.json),
        );
      } else {
        print(await d1Status(d1), shownD1(d1), args.json);
      }
    }),
});

export const capture = defineCommand({
  meta: {
    name: "capture",
    description:
      "Change capture: invalidate on writes made around edgecache (psql, jobs, migrations)",
  },
  subCommands: { install, uninstall, status },
});
