/**
 * A V8 CPU profile (.cpuprofile, from --cpu-prof or the inspector) summed up: each
 * function's share of the busy time (idle left out), by its own time (self) and with what
 * it calls (inclusive), as a Markdown table.
 *
 *   npx tsx bench/lib/cpu-profile.ts .scratch/prof/edgecache.cpuprofile
 *   npx tsx bench/lib/cpu-profile.ts .scratch/prof/edgecache.cpuprofile .scratch/prof/edgecache.writes.json
 *   npx tsx bench/lib/cpu-profile.ts --samples a.cpuprofile   # by sample count (see `shares`)
 *   npx tsx bench/lib/cpu-profile.ts --under '#patches' a.cpuprofile   # what its calls spend (see `under`)
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  /** When the first sample's delta starts, us on the monotonic clock. */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Shares {
  /** Busy time (every sample but idle), ms. */
  busyMs: number;
  self: [string, number][];
  inclusive: [string, number][];
}

/** A function's name and file (within src/ or node_modules/), as the tables show it. */
function label(node: ProfileNode): string {
  const { functionName, url } = node.callFrame;
  const file = url.replace(/^.*?\/(src|node_modules|bench)\//, "$1/").replace(/^file:\/\//, "");
  return `${functionName || "(anonymous)"}${file ? ` ${file}` : ""}`;
}

/** The profile's nodes by id, and each node's caller. */
function links(profile: Profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  return { byId, parent };
}

/**
 * The shares of the samples taken in `windows` alone ([from, to, ...] on the profile's clock,
 * in order), or of all of them.
 */
export function shares(
  profile: Profile,
  windows?: readonly (readonly [number, number, ...unknown[]])[],
  /**
   * Weigh each sample alike (the profile's mean interval) instead of by its time delta. A
   * delta is wall time: on a saturated machine a process descheduled inside a system call
   * (a socket write that wakes another process, SQLite) charges the wait to that frame, and
   * the busy time far exceeds its CPU time (bench:cluster's 3 nodes: 17.9 s against 7.1 s).
   * A pending sampling signal is taken once when the thread runs again: counts follow CPU
   * more closely (there, 12.8 s by count).
   */
  bySamples = false,
): Shares {
  const mean =
    profile.samples.length > 0
      ? profile.timeDeltas.reduce((a, b) => a + b, 0) / profile.samples.length
      : 0;
  const { byId, parent } = links(profile);
  const time = new Map<number, number>();
  let at = profile.startTime;
  let w = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    at += profile.timeDeltas[i] ?? 0;
    const delta = bySamples ? mean : (profile.timeDeltas[i] ?? 0);
    if (windows) {
      while (w < windows.length && windows[w]![1] < at) w++;
      if (w === windows.length || windows[w]![0] > at) continue;
    }
    time.set(id, (time.get(id) ?? 0) + delta);
  }
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of time) {
    const node = byId.get(id)!;
    if (node.callFrame.functionName === "(idle)") continue;
    busy += us;
    self.set(label(node), (self.get(label(node)) ?? 0) + us);
    // Each function once per sample, however deep it recurses.
    const seen = new Set<string>();
    for (let up: number | undefined = id; up !== undefined; up = parent.get(up)) {
      const name = label(byId.get(up)!);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + us);
    }
  }
  const sorted = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v / busy] as [string, number]);
  return { busyMs: busy / 1000, self: sorted(self), inclusive: sorted(inclusive) };
}

/**
 * Where the time spent under the frames named `name` goes, by the self time of each
 * function (and of `name` itself) in the samples that have such a frame on their stack,
 * most first: what a function costs, and which of its callees to look at. In ms.
 */
export function under(
  profile: Profile,
  name: string,
): { totalMs: number; self: [string, number][] } {
  const { byId, parent } = links(profile);
  const inside = new Map<number, boolean>();
  const isInside = (id: number | undefined): boolean => {
    if (id === undefined) return false;
    let known = inside.get(id);
    if (known === undefined) {
      known = byId.get(id)!.callFrame.functionName === name || isInside(parent.get(id));
      inside.set(id, known);
    }
    return known;
  };
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    if (!isInside(id)) continue;
    const us = profile.timeDeltas[i] ?? 0;
    total += us;
    const l = label(byId.get(id)!);
    self.set(l, (self.get(l) ?? 0) + us);
  }
  const sorted = [...self]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => [k, v / 1000] as [string, number]);
  return { totalMs: total / 1000, self: sorted };
}

/** The top `n` by self time, and the given functions' inclusive shares (by name prefix). */
export function sharesMarkdown(s: Shares, n: number, watch: readonly string[]): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const rows = (list: [string, number][]) =>
    list.map(([name, share]) => `| \`${name}\` | ${pct(share)} |`).join("\n");
  const watched = watch.flatMap((w) =>
    s.inclusive.filter(([name]) => name.startsWith(w)).slice(0, 1),
  );
  return `Busy time ${Math.round(s.busyMs).toLocaleString("en-US")} ms (idle left out).

| function, with what it calls | share of busy time |
| --- | ---: |
${rows(watched)}

| function, its own time | share of busy time |
| --- | ---: |
${rows(s.self.slice(0, n))}
`;
}

/** The functions of a write's path whose inclusive shares bench:writes reports. */
export const WRITE_PATH = [
  "(garbage collector)",
  "#applyOps src/core/cache/apply.ts",
  "planRecord src/core/cache/record-plan.ts",
  "#patches src/core/cache/apply.ts",
  "parseBody src/app/data-api.ts",
  "storeLoaded src/core/cache/loads.ts",
  "strongEtag src/core/cache/entries.ts",
  "remove src/core/cache/entries.ts",
  "add src/core/deps/index.ts",
  "remove src/core/deps/index.ts",
  "#write src/sources/sql-source.ts",
  "sqliteTransaction node_modules/better-sqlite3",
  "writevGeneric node:internal",
];

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === "--under") {
  const [name, file] = process.argv.slice(3);
  if (!name || !file) throw new Error("[bench] usage: cpu-profile.ts --under <function> <file>");
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const { totalMs, self } = under(profile, name);
  const rows = self.slice(0, 25).map(([l, ms]) => `| \`${l}\` | ${ms.toFixed(0)} |`);
  console.log(
    `Under \`${name}\`: ${totalMs.toFixed(0)} ms.\n\n| function, its own time | ms |\n| --- | ---: |\n${rows.join("\n")}`,
  );
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const bySamples = process.argv[2] === "--samples";
  const [file, windowsFile] = process.argv.slice(bySamples ? 3 : 2);
  if (!file) throw new Error("[bench] usage: cpu-profile.ts [--samples] <file.cpuprofile>");
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  // With the node's write windows beside it (bench:writes), the writes alone.
  const windows = windowsFile && JSON.parse(readFileSync(windowsFile, "utf8"));
  console.log(sharesMarkdown(shares(profile, windows || undefined, bySamples), 25, WRITE_PATH));
}
