import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join, resolve } from "node:path";
import { Hono } from "hono";
import { afterEach, describe, expect, it } from "vitest";
import { startServer } from "../../src/adapter/node/server/server.ts";
import { tempDir } from "../app/harness.ts";
import { startOrigin } from "../app/proxy/harness.ts";
import { waitForLine } from "../helpers/child.ts";

// Stopping the real commands with a signal: `npm start`, `npx edgecache proxy` and the
// binary itself. Each must drain the request in flight, release the port and leave no
// process behind (no orphan that still answers).

const ROOT = resolve(import.meta.dirname, "../..");
const BIN = join(ROOT, "bin/edgecache.js");

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** This environment without what would change the commands (npm's own variables included). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name === "PORT" || name === "EDGECACHE_ADMIN_TOKEN" || /^npm_/i.test(name)) continue;
    env[name] = value;
  }
  return env;
}

/** The process and all its descendants (Linux /proc), so none can be missed as an orphan. */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // pid (comm) state ppid ...: comm may hold spaces, so read after its last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // exited while listing
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]!) ?? []));
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie has exited; only its parent's wait is missing.
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 15_000) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const refused = (port: number) =>
  new Promise<boolean>((done) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      done(false);
    });
    socket.once("error", () => done(true));
  });

/** Whether this process can listen on `port` now: nothing holds it. */
const free = (port: number) =>
  new Promise<boolean>((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen(port, "127.0.0.1", () => server.close(() => done(true)));
  });

/** Spawns `command` and, after the test, kills whatever of its tree is still there. */
function start(
  command: string,
  args: string[],
  cwd: string,
): { child: ChildProcess; tree: Set<number> } {
  const child = spawn(command, args, { cwd, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
  const tree = new Set<number>([child.pid!]);
  cleanup.push(() => {
    for (const pid of tree) if (alive(pid)) process.kill(pid, "SIGKILL");
  });
  return { child, tree };
}

/** A request sent as far as its body's first half: in flight until `finish` sends the rest. */
function postInHalves(port: number, path: string, body: string) {
  const socket = connect(port, "127.0.0.1");
  let response = "";
  socket.on("data", (chunk) => {
    response += chunk;
  });
  const closed = new Promise<void>((done) => socket.once("close", () => done()));
  const half = body.length >> 1;
  socket.write(
    `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, half)}`,
  );
  return {
    async finish(): Promise<string> {
      socket.write(body.slice(half));
      // The server closes the connection after the reply: it is shutting down.
      await closed;
      return response;
    },
  };
}

describe("stopping with a signal", () => {
  it("`npm start`: SIGTERM to npm drains the write in flight, frees the port and ends every process", async () => {
    const dir = tempDir();
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const { child, tree } = start(
      "npm",
      ["start", "--", "--port", "0", "--db", join(dir, "demo.db")],
      ROOT,
    );
    const [, url] = await waitForLine(child, /data API:\s+(http:\/\/[^/\s]+)\/v1\//);
    const port = Number(new URL(url!).port);
    for (const pid of processTree(child.pid!)) tree.add(pid);
    expect(tree.size).toBeGreaterThan(1); // npm and the server at least

    const post = postInHalves(
      port,
      "/v1/users",
      JSON.stringify({
        firstName: "Ada",
        lastName: "Drain",
        email: "ada.drain@example.com",
        createdAt: "2025-01-01T00:00:00Z",
      }),
    );
    // A reply on another connection: by then the server has read the POST's head.
    expect((await fetch(`${url}/v1/users?limit=1`)).status).toBe(200);
    const exited = new Promise<number | null>((done) => child.once("exit", done));
    child.kill("SIGTERM");

    await until("the server stops accepting connections", () => refused(port));
    const reply = await post.finish();
    expect(reply).toMatch(/^HTTP\/1\.1 201 /);
    expect(reply).toContain('"lastName":"Drain"');
    expect(await exited).toBe(0);
    await until("every process of the tree has exited", () => [...tree].every((p) => !alive(p)));
    expect(await free(port)).toBe(true);
  }, 60_000);

  it("`npx edgecache proxy`: SIGTERM to npx drains the request in flight, frees the port and ends every process", async () => {
    let release = () => {};
    let arrived = () => {};
    const atOrigin = new Promise<void>((done) => {
      arrived = done;
    });
    const origin = await startOrigin(async (_req, res) => {
      arrived();
      await new Promise<void>((done) => {
        release = done;
      });
      res.writeHead(200, { "content-type": "text/plain", "cache-control": "max-age=60" });
      res.end("slow answer");
    });
    cleanup.push(() => origin.close());
    // --offline: the command resolves to this package (npm links it); no registry involved.
    const { child, tree } = start(
      "npm",
      [
        "exec",
        "--offline",
        "--",
        "edgecache",
        "proxy",
        "--origin",
        origin.url,
        "--port",
        "0",
        "--no-cache-file",
      ],
      ROOT,
    );
    const [, url] = await waitForLine(child, /proxy:\s+(http:\/\/[^/\s]+)\//);
    const port = Number(new URL(url!).port);
    for (const pid of processTree(child.pid!)) tree.add(pid);
    expect(tree.size).toBeGreaterThan(2); // npm, its shell, the server

    const slow = fetch(`${url}/slow`).then(async (r) => [r.status, await r.text()]);
    await atOrigin;
    child.kill("SIGTERM");
    await until("the server stops accepting connections", () => refused(port));
    release();
    expect(await slow).toEqual([200, "slow answer"]);
    await until("every process of the tree has exited", () => [...tree].every((p) => !alive(p)));
    expect(await free(port)).toBe(true);
  }, 60_000);

  it("the binary: SIGINT drains the write in flight, then the process exits 0", async () => {
    const dir = tempDir();
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const { child } = start(process.execPath, [BIN, "serve", "--port", "0"], dir);
    const [, url] = await waitForLine(child, /data API:\s+(http:\/\/[^/\s]+)\/v1\//);
    const port = Number(new URL(url!).port);
    const post = postInHalves(
      port,
      "/v1/users",
      JSON.stringify({
        firstName: "Ada",
        lastName: "Interrupt",
        email: "ada.int@example.com",
        createdAt: "2025-01-01T00:00:00Z",
      }),
    );
    expect((await fetch(`${url}/v1/users?limit=1`)).status).toBe(200);
    const exited = new Promise<number | null>((done) => child.once("exit", done));
    child.kill("SIGINT");
    await until("the server stops accepting connections", () => refused(port));
    expect(await post.finish()).toMatch(/^HTTP\/1\.1 201 /);
    expect(await exited).toBe(0);
  }, 60_000);
});

describe("RunningServer.close", () => {
  it("ends a request that never finishes once the drain time is over", async () => {
    let arrived = () => {};
    const atServer = new Promise<void>((done) => {
      arrived = done;
    });
    const app = new Hono();
    app.get("/never", () => {
      arrived();
      return new Promise<Response>(() => {});
    });
    const running = await startServer({ app, port: 0 });
    const pending = fetch(`${running.url}/never`).catch((err: unknown) => err);
    await atServer;
    await running.close(200);
    expect(await pending).toBeInstanceOf(Error);
  });
});
