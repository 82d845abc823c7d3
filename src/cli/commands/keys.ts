import { defineCommand } from "citty";
import { bytes, seconds, table } from "./format.ts";
import { JSON_ARG, NODE_ARGS, nodeClient } from "./node-client.ts";

interface ListDependency {
  table: string;
  filters: { column: string; op: string; value: string | number }[];
  sort: { column: string; desc: boolean }[];
  offset: number;
  limit: number;
  count: number;
}

interface KeySummary {
  key: string;
  hits: number;
  tags: string[];
  lists: ListDependency[];
  bytes?: number;
  ageSeconds?: number;
  ttlSeconds?: number;
}

interface KeyDetails extends Partial<KeySummary> {
  key: string;
  tiers: { tier: string; present: boolean }[];
  status?: number;
  etag?: string;
}

const args = {
  key: {
    type: "positional",
    required: false,
    description:
      'Show one key with its dependencies and the tiers holding it, e.g. "GET /v1/users/1"',
  },
  prefix: { type: "string", description: "List only keys starting with this", valueHint: "prefix" },
  tag: { type: "string", description: "List only keys depending on this tag", valueHint: "tag" },
  ...JSON_ARG,
  ...NODE_ARGS,
} as const;

/** `edgecache keys [KEY]`: the cached keys of a running node, or one key in detail. */
export const keys = defineCommand({
  meta: {
    name: "keys",
    description: "List a running node's cached keys, or inspect one with its dependencies",
  },
  args,
  async run({ args: a }) {
    const node = nodeClient(a);
    if (a.key) {
      const details = await node.admin<KeyDetails>("GET", `/keys/${encodeURIComponent(a.key)}`);
      console.log(a.json ? JSON.stringify(details, null, 2) : describe(details));
      return;
    }
    const query = new URLSearchParams({
      ...(a.prefix && { prefix: a.prefix }),
      ...(a.tag && { tag: a.tag }),
    });
    const listed = await node.admin<{ keys: KeySummary[]; truncated: boolean }>(
      "GET",
      `/keys${query.size ? `?${query}` : ""}`,
    );
    if (a.json) {
      console.log(JSON.stringify(listed, null, 2));
      return;
    }
    if (listed.keys.length === 0) {
      console.log("no cached keys");
      return;
    }
    console.log(
      table(
        ["KEY", "HITS", "SIZE", "AGE", "TTL", "DEPENDS ON"],
        listed.keys.map((k) => [
          k.key,
          k.hits,
          bytes(k.bytes),
          seconds(k.ageSeconds),
          seconds(k.ttlSeconds),
          dependsOn(k),
        ]),
      ),
    );
    const n = listed.keys.length;
    console.log(
      `${n} ${n === 1 ? "key" : "keys"}${listed.truncated ? " (the first ones only: narrow with --prefix or --tag)" : ""}`,
    );
  },
});

/** Tags, then list windows in short form. */
function dependsOn(k: Pick<KeySummary, "tags" | "lists">): string {
  const parts = [...(k.tags ?? [])];
  for (const l of k.lists ?? []) parts.push(`${l.table}[list]`);
  const shown = parts.slice(0, 4).join(" ");
  return parts.length > 4 ? `${shown} +${parts.length - 4}` : shown;
}

function describe(d: KeyDetails): string {
  const lines = [
    d.key,
    `  tiers:   ${d.tiers.map((t) => `${t.tier} ${t.present ? "yes" : "no"}`).join(", ")}`,
  ];
  if (d.status !== undefined) lines.push(`  status:  ${d.status}`);
  if (d.etag) lines.push(`  etag:    ${d.etag}`);
  if (d.bytes !== undefined) lines.push(`  size:    ${bytes(d.bytes)}`);
  if (d.ageSeconds !== undefined) lines.push(`  age:     ${seconds(d.ageSeconds)}`);
  if (d.ttlSeconds !== undefined) lines.push(`  ttl:     ${seconds(d.ttlSeconds)}`);
  lines.push(`  hits:    ${d.hits ?? 0}`);
  lines.push(`  tags:    ${d.tags?.length ? d.tags.join(" ") : "none"}`);
  for (const l of d.lists ?? []) lines.push(`  list:    ${listText(l)}`);
  return lines.join("\n");
}

/** users where lastName prefix "La", sorted by id, rows 0..9 (10 held) */
function listText(l: ListDependency): string {
  const where = l.filters.map((f) => `${f.column} ${f.op} ${JSON.stringify(f.value)}`);
  const sort = l.sort.map((s) => `${s.column}${s.desc ? " desc" : ""}`).join(", ");
  return [
    l.table,
    where.length ? `where ${where.join(" and ")}` : "all rows",
    `sorted by ${sort}`,
    `offset ${l.offset} limit ${l.limit} (${l.count} held)`,
  ].join(", ");
}
