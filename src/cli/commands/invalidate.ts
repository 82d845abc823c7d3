import { defineCommand } from "citty";
import { flagValues } from "../flags.ts";
import { usageError } from "../run.ts";
import { JSON_ARG, NODE_ARGS, nodeClient } from "./node-client.ts";

const args = {
  key: {
    type: "string",
    description: 'A cached key, e.g. "GET /v1/users?limit=5" (repeatable)',
    valueHint: "key",
  },
  prefix: { type: "string", description: "Every key starting with this", valueHint: "prefix" },
  tag: {
    type: "string",
    description: "Every entry depending on this tag, e.g. users#123 (repeatable)",
    valueHint: "tag",
  },
  table: {
    type: "string",
    description: "Every entry that read this table (repeatable)",
    valueHint: "table",
  },
  row: {
    type: "string",
    description: "Every entry holding this row, as table:id, e.g. users:123 (repeatable)",
    valueHint: "table:id",
  },
  ...JSON_ARG,
  ...NODE_ARGS,
} as const;

/** `edgecache invalidate`: removes entries from every tier of a running node. */
export const invalidate = defineCommand({
  meta: {
    name: "invalidate",
    description: "Remove cached entries by key, prefix, tag, table or row from a running node",
  },
  args,
  async run({ args: a, rawArgs }) {
    const keys = flagValues(rawArgs, "key");
    const tags = flagValues(rawArgs, "tag");
    const tables = flagValues(rawArgs, "table");
    const rows = flagValues(rawArgs, "row").map(rowOf);
    const prefix = a.prefix;
    if (prefix === "") throw usageError("--prefix: expected a non-empty prefix");
    if (keys.length + tags.length + tables.length + rows.length === 0 && prefix === undefined) {
      throw usageError("expected one of --key, --prefix, --tag, --table or --row");
    }
    const node = nodeClient(a);
    // One request per table or row: the admin API takes one of each in a body.
    const bodies: object[] = [
      ...(keys.length || tags.length || prefix !== undefined
        ? [{ keys, tags, ...(prefix !== undefined && { prefix }) }]
        : []),
      ...tables.map((table) => ({ table })),
      ...rows.map((row) => ({ row })),
    ];
    let invalidated = 0;
    for (const body of bodies) {
      invalidated += (await node.admin<{ invalidated: number }>("POST", "/invalidate", body))
        .invalidated;
    }
    if (a.json) console.log(JSON.stringify({ invalidated }));
    else console.log(`invalidated ${invalidated} ${invalidated === 1 ? "entry" : "entries"}`);
  },
});

function rowOf(value: string): { table: string; id: string } {
  const at = value.indexOf(":");
  if (at <= 0 || at === value.length - 1) {
    throw usageError(`--row: expected table:id such as users:123, got ${JSON.stringify(value)}`);
  }
  return { table: value.slice(0, at), id: value.slice(at + 1) };
}
