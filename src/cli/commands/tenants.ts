import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { defineCommand } from "citty";
import { DEFAULT_STATE_FILE, openTenantState } from "../../adapter/node/tenants/state.ts";
import type { Settled, TenantState } from "../../adapter/node/tenants/state-contract.ts";
import type { Tenant } from "../../adapter/tenants/model.ts";
import { isPostgresUrl, redactUrl, sqliteFileProblem } from "../../sources/index.ts";
import { envVar } from "../environment.ts";
import { usageError } from "../run.ts";
import { bytes, table } from "./format.ts";
import { httpTenantState } from "./tenants-http.ts";

const STATE_ARG = {
  state: {
    type: "string",
    description: `The state database: a SQLite file, or a postgres:// or redis:// URL (default: EDGECACHE_STATE, else ./${DEFAULT_STATE_FILE})`,
    valueHint: "path|url",
  },
  url: {
    type: "string",
    description:
      "A Worker of tenants (edgecacheTenantsWorker), e.g. https://api.example.com: its tenants instead of a state database",
    valueHint: "url",
  },
  token: {
    type: "string",
    description:
      "With --url: the Worker's EDGECACHE_ADMIN_TOKEN (default: EDGECACHE_ADMIN_TOKEN; the variable keeps it out of `ps`)",
    valueHint: "token",
  },
} as const;
const JSON_ARG = { json: { type: "boolean", description: "Print JSON, for scripts" } } as const;

/**
 * The state database the flags name; `create` makes a SQLite file, the other commands need
 * it. A PostgreSQL or Redis URL gets its tables or keys on first use.
 */
function stateOf(
  args: { state?: string; url?: string; token?: string },
  create = false,
): Promise<TenantState> {
  if (args.url) {
    if (args.state) throw usageError("expected either --state or --url, not both");
    return Promise.resolve(httpTenantState({ url: args.url, token: args.token }));
  }
  const named = args.state || envVar("EDGECACHE_STATE") || DEFAULT_STATE_FILE;
  if (/^(postgres(ql)?|rediss?):\/\//i.test(named)) return openTenantState(named);
  const path = resolve(named);
  if (!create && !existsSync(path)) {
    throw usageError(`no state database at ${path}: create a tenant first, or pass --state`);
  }
  return openTenantState(path);
}

/**
 * Waits for the running nodes of a shared state to apply the change, and says so: after
 * this, a rotated key or a deleted tenant is refused by every node.
 */
async function settled(state: TenantState, json: boolean): Promise<{ nodes?: number }> {
  const s: Settled | undefined = await state.settle();
  if (!s) return {};
  if (s.behind > 0) {
    console.error(
      `[edgecache] [tenants] ${s.behind} of ${s.nodes} running nodes did not confirm the change; they refuse requests until they hear the state again`,
    );
  } else if (!json) console.error(`applied by ${s.nodes} running node${s.nodes === 1 ? "" : "s"}`);
  return { nodes: s.nodes };
}

const createArgs = {
  name: { type: "positional", required: false, description: "The tenant's name, e.g. shop" },
  db: {
    type: "string",
    description:
      "Its SQLite file or postgres:// URL (with --url: the name of a D1 binding of the Worker), served as its data API",
    valueHint: "path|binding",
  },
  origin: { type: "string", description: "Its HTTP API, cached as a proxy", valueHint: "url" },
  ttl: {
    type: "string",
    description: "Default seconds a response stays cached",
    valueHint: "seconds",
  },
  memory: { type: "string", description: "Its memory budget in MB (default 50)", valueHint: "MB" },
  "read-key": {
    type: "boolean",
    description: "Also print a read-only key (GET and HEAD: no writes, no invalidation)",
  },
  "public-host": {
    type: "string",
    description: "Reads without a key that name this Host are this tenant's (public reads)",
    valueHint: "host",
  },
  ...JSON_ARG,
  ...STATE_ARG,
} as const;

const create = defineCommand({
  meta: { name: "create", description: "Create a tenant and print its API key (shown once)" },
  args: createArgs,
  async run({ args: a }) {
    if (!a.name) throw usageError("expected a name: edgecache tenants create <name> --db <file>");
    if (!a.db === !a.origin)
      throw usageError("expected either --db <sqlite file> or --origin <url>");
    let source: Tenant["source"];
    if (a.db && a.url) {
      source = { database: a.db }; // a D1 binding of the Worker, which checks it
    } else if (a.db) {
      // A PostgreSQL URL is kept as given (the node connects when the tenant's first
      // request comes); a SQLite file must exist now.
      const database = isPostgresUrl(a.db) ? a.db : resolve(a.db);
      const problem = isPostgresUrl(a.db) ? undefined : sqliteFileProblem(database);
      if (problem) throw usageError(`--db: ${problem}`);
      source = { database };
    } else {
      let url: URL;
      try {
        url = new URL(a.origin!);
      } catch {
        throw usageError(
          `--origin: expected a URL such as http://127.0.0.1:3000, got ${JSON.stringify(a.origin)}`,
        );
      }
      source = { origin: url.origin };
    }
    const ttl = a.ttl === undefined ? undefined : Number(a.ttl);
    if (ttl !== undefined && !(Number.isInteger(ttl) && ttl >= 1)) {
      throw usageError(`--ttl: expected whole seconds >= 1, got ${a.ttl}`);
    }
    const mb = a.memory === undefined ? undefined : Number(a.memory);
    if (mb !== undefined && !(Number.isInteger(mb) && mb >= 1)) {
      throw usageError(`--memory: expected whole MB >= 1, got ${a.memory}`);
    }
    const state = await stateOf(a, true);
    try {
      const { tenant, key, readKey } = await state.create({
        name: a.name,
        source,
        ...(ttl !== undefined && { ttl }),
        ...(mb !== undefined && { memoryBytes: mb * 1024 * 1024 }),
        ...(a["read-key"] && { readKey: true }),
        ...(a["public-host"] && { publicHost: a["public-host"] }),
      });
      const nodes = await settled(state, !!a.json);
      if (a.json)
        console.log(JSON.stringify({ ...tenant, key, ...(readKey && { readKey }), ...nodes }));
      else {
        console.log(`created tenant ${tenant.name}; its API key (shown only now):`);
        console.log(key);
        if (readKey) console.log(`its read-only key:\n${readKey}`);
        console.log("send it as: Authorization: Bearer <key>   (or X-Edgecache-Key: <key>)");
      }
    } finally {
      await state.close();
    }
  },
});

const listArgs = { ...JSON_ARG, ...STATE_ARG } as const;

const list = defineCommand({
  meta: { name: "list", description: "List the tenants (never their keys)" },
  args: listArgs,
  async run({ args: a }) {
    const state = await stateOf(a);
    try {
      const tenants = await state.list();
      if (a.json) console.log(JSON.stringify(tenants, null, 2));
      else if (tenants.length === 0) console.log("no tenants");
      else {
        console.log(
          table(
            ["NAME", "SOURCE", "TTL", "MEMORY", "READ KEY", "PUBLIC HOST", "CREATED"],
            tenants.map((t) => [
              t.name,
              "database" in t.source ? redactUrl(t.source.database) : t.source.origin,
              t.ttl === undefined ? "default" : `${t.ttl}s`,
              t.memoryBytes === undefined ? "default" : bytes(t.memoryBytes),
              t.readKey ? "yes" : "no",
              t.publicHost ?? "-",
              t.createdAt,
            ]),
          ),
        );
      }
    } finally {
      await state.close();
    }
  },
});

const nameArgs = {
  name: { type: "positional", required: false, description: "The tenant's name" },
  ...JSON_ARG,
  ...STATE_ARG,
} as const;
const rotateArgs = {
  ...nameArgs,
  read: { type: "boolean", description: "Rotate (or add) the read-only key instead" },
} as const;

const rotateKey = defineCommand({
  meta: {
    name: "rotate-key",
    description: "Give a tenant a new API key; the old one is refused from the next request on",
  },
  args: rotateArgs,
  async run({ args: a }) {
    if (!a.name) throw usageError("expected a name: edgecache tenants rotate-key <name>");
    const state = await stateOf(a);
    try {
      const scope = a.read ? "read" : "write";
      const key = await state.rotateKey(a.name, scope);
      const what = a.read ? "read-only key" : "API key";
      const nodes = await settled(state, !!a.json);
      if (a.json) console.log(JSON.stringify({ name: a.name, scope, key, ...nodes }));
      else
        console.log(
          `new ${what} of ${a.name} (shown only now; the old one no longer works):\n${key}`,
        );
    } finally {
      await state.close();
    }
  },
});

const remove = defineCommand({
  meta: { name: "delete", description: "Delete a tenant: its key stops working, its entries go" },
  args: nameArgs,
  async run({ args: a }) {
    if (!a.name) throw usageError("expected a name: edgecache tenants delete <name>");
    const state = await stateOf(a);
    try {
      await state.delete(a.name);
      const nodes = await settled(state, !!a.json);
      console.log(
        a.json ? JSON.stringify({ deleted: a.name, ...nodes }) : `deleted tenant ${a.name}`,
      );
    } finally {
      await state.close();
    }
  },
});

/** `edgecache tenants ...`: the tenants in the state database a node serves. */
export const tenants = defineCommand({
  meta: {
    name: "tenants",
    description:
      "Create, list, rotate the key of and delete tenants (a running node sees it at once)",
  },
  subCommands: { create, list, "rotate-key": rotateKey, delete: remove },
});
