/**
 * Where the client sends its requests: the cached app in this process (through Hono's
 * `app.request`, no socket), and the uncached app in a process of its own (server.ts over
 * HTTP), which is both the reference every read is compared with and the other process
 * that writes to the same file around the cache.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import type { Hono } from "hono";
import { headersOf, type Reply, type Request } from "./ops.ts";

const ROOT = resolve(import.meta.dirname, "../../..");
const READY_MS = 30_000;

export interface Target {
  send(request: Request): Promise<Reply & { statements: number }>;
}

async function replyOf(res: Response): Promise<Reply & { statements: number }> {
  const text = await res.text();
  return {
    status: res.status,
    body: text === "" ? null : (JSON.parse(text) as unknown),
    statements: Number(res.headers.get("x-statements") ?? 0),
  };
}

function init(request: Request): RequestInit {
  return {
    method: request.method,
    headers: headersOf(request),
    ...(request.body !== undefined && { body: JSON.stringify(request.body) }),
  };
}

export function appTarget(app: Hono<never>): Target {
  return { send: async (r) => replyOf(await app.request(r.path, init(r))) };
}

export function httpTarget(url: string): Target {
  return { send: async (r) => replyOf(await fetch(url + r.path, init(r))) };
}

/** A server.ts process on the file, uncached; `stop` ends it (SIGTERM, then SIGKILL). */
export interface OtherProcess extends Target {
  pid: number;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
// A run that dies without stopping its child (an uncaught error) still kills it.
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export async function startOtherProcess(file: string): Promise<OtherProcess> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "examples/conduit/server.ts", "--db", file],
    { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] },
  );
  running.add(child);
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  exited.then(() => running.delete(child));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const url = await readyUrl(child, exited);
    return { pid: child.pid!, stop, ...httpTarget(url) };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The URL the server prints once listening. */
function readyUrl(child: ChildProcess, exited: Promise<void>): Promise<string> {
  const lines = createInterface({ input: child.stdout! });
  return new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error("the other process did not start")), READY_MS);
    lines.once("line", (line) => {
      clearTimeout(timer);
      resolveUrl((JSON.parse(line) as { url: string }).url);
    });
    exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`the other process exited (${child.exitCode ?? child.signalCode})`));
    });
  });
}
