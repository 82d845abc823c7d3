/** Results files: `<out>.json` and `<out>.md`, with what was measured, where and how. */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, relative, resolve } from "node:path";
import type { LoadTool } from "./load.ts";
import { ROOT } from "./processes.ts";
import { round2 } from "./rounds.ts";
import type { Settings } from "./settings.ts";

export interface GitState {
  commit: string;
  /** `git status --porcelain` lines of uncommitted changes under src/. */
  changed: string[];
}

/** The commit measured, and uncommitted changes under src/ that the figures include. */
export function gitState(): GitState | undefined {
  const git = (...argv: string[]) => spawnSync("git", argv, { cwd: ROOT, encoding: "utf8" });
  const head = git("rev-parse", "--short", "HEAD");
  if (head.status !== 0) return undefined;
  const changed = git("status", "--porcelain", "--", "src").stdout.split("\n").filter(Boolean);
  return { commit: head.stdout.trim(), changed };
}

/** "commit abc1234 plus uncommitted src/x.ts, ...", for the Markdown. */
export function describeCode(git: GitState | undefined): string {
  if (!git) return "commit unknown";
  const changed = git.changed.map((line) => line.slice(3)).join(", ");
  return `commit ${git.commit}${changed ? ` plus uncommitted ${changed}` : ""}`;
}

/** The fields a result starts with: when, and the load. */
export function runHead(tool: LoadTool, settings: Settings) {
  return {
    date: new Date().toISOString(),
    tool: tool.version(),
    connections: settings.connections,
    duration: settings.duration,
    rounds: settings.rounds,
    warmup: settings.warmup,
    threads: settings.tool === "wrk" ? settings.threads : undefined,
  };
}

/** The fields a result ends with: how to run it again, the code and the machine. */
export function runTail(
  tool: LoadTool,
  settings: Settings,
  command: string,
  loadavgBefore: number[],
) {
  return {
    command,
    git: gitState(),
    loadCommand: tool.args("<url>", settings.duration).join(" "),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadavgBefore: loadavgBefore.map(round2),
    loadavgAfter: loadavg().map(round2),
  };
}

type Run = ReturnType<typeof runHead> & ReturnType<typeof runTail>;

/** Markdown: when, which code, and how the rounds ran, up to the targets' order. */
export function describeRun(r: Run, targets: readonly string[]): string {
  return `${r.date}, ${describeCode(r.git)}. ${r.tool}, ${r.connections} keep-alive connections, ${r.duration} s per round, ${r.rounds} rounds alternating (${targets.join(", ")}, ...)`;
}

/** Markdown: the machine, on a line of its own. */
export function describeMachine(r: Run): string {
  return `Node ${r.node}, ${r.cpus} × ${r.cpuModel ?? "cpu"}, load average before ${r.loadavgBefore.join(" ")}.`;
}

/** Markdown: the command that produced the result, and the load tool's per round. */
export function describeCommand(r: Run): string {
  return `Command:

\`\`\`sh
${r.command}
\`\`\`

Load per round: \`${r.loadCommand}\`
`;
}

/** Writes `<out>.json` and `<out>.md` (out relative to the repository); returns `out` so. */
export function writeResults(out: string, json: object, markdown: string): string {
  const path = resolve(ROOT, out);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(`${path}.json`, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(`${path}.md`, markdown);
  return relative(ROOT, path);
}

/** Requests per second as the Markdown shows them: 64,486. */
export function formatRps(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/**
 * The fields a driver's JSON starts with: when, the command, the code, the machine and its
 * load before (`loadavgBefore`, taken at the start) and now, and the seconds since `started`.
 */
export function benchHead(command: string, started: number, loadavgBefore: number[]) {
  return {
    date: new Date().toISOString(),
    command,
    git: gitState(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadavgBefore: loadavgBefore.map(round2),
    loadavgAfter: loadavg().map(round2),
    seconds: Math.round((Date.now() - started) / 1000),
  };
}

/** Markdown: the line under a driver's title, from `benchHead`. */
export function describeHead(h: ReturnType<typeof benchHead>): string {
  return `${h.date}, ${describeCode(h.git)}. Node ${h.node}, ${h.cpus} × ${h.cpuModel ?? "cpu"}, load average ${h.loadavgBefore.join(" ")} before and ${h.loadavgAfter.join(" ")} after (other work on the machine counts). ${h.seconds} s in all.`;
}
