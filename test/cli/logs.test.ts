import { type ChildProcess, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../app/harness.ts";
import { startOrigin, startProxy } from "../app/proxy/harness.ts";
import { CLI } from "../helpers/built-cli.ts";
import { waitForLine } from "../helpers/child.ts";
import { cleanEnv, cli } from "./run-cli.ts";

// The JSON log of the real binary: quiet by default, every request with its id at info.

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** `edgecache serve` in a temp dir; `lines()` is every stdout line so far. */
async function serve(
  args: string[],
  ready = /data API:\s+(http:\/\/[^/\s]+)\/v1\//,
): Promise<{ url: string; lines: () => string[] }> {
  const dir = tempDir();
  const child: ChildProcess = spawn(
    process.execPath,
    [CLI, "serve", "--port", "0", "--no-cache-file", ...args],
    { cwd: dir, env: cleanEnv() },
  );
  let out = "";
  child.stdout!.on("data", (c) => {
    out += c;
  });
  cleanup.push(async () => {
    const exited = new Promise((done) => child.once("exit", done));
    child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  const [, url] = await waitForLine(child, ready);
  return { url: url!, lines: () => out.split("\n").filter((l) => l !== "") };
}

const jsonLines = (lines: string[]) =>
  lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));

async function until<T>(what: string, get: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("--log-level info", () => {
  it("logs each request as one JSON line with its id, status, time and cache status", async () => {
    const node = await serve(["--log-level", "info"]);
    const first = await fetch(`${node.url}/v1/users?limit=2`, {
      headers: { "x-request-id": "trace-abc.1" },
    });
    await first.text();
    expect(first.headers.get("x-request-id")).toBe("trace-abc.1");
    // A hit, on a keep-alive connection: at info it is logged too (no raw path).
    const second = await fetch(`${node.url}/v1/users?limit=2`);
    await second.text();
    const id = second.headers.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const logged = await until("both requests logged", () => {
      const found = jsonLines(node.lines()).filter((l) => l.msg === "request");
      return found.length >= 2 ? found : undefined;
    });
    expect(logged[0]).toMatchObject({
      level: 30,
      reqId: "trace-abc.1",
      method: "GET",
      url: "/v1/users?limit=2",
      status: 200,
      cache: expect.stringMatching(/fwd=miss/),
    });
    expect(logged[0].ms).toBeGreaterThan(0);
    expect(logged[1]).toMatchObject({ reqId: id, cache: expect.stringMatching(/; hit/) });
  }, 30_000);
});

describe("by default", () => {
  it("logs nothing for requests that succeed, and sends no X-Request-Id", async () => {
    const node = await serve([]);
    const r = await fetch(`${node.url}/v1/users?limit=2`);
    await r.text();
    await fetch(`${node.url}/v1/users?limit=2`).then((x) => x.text());
    expect(r.headers.get("x-request-id")).toBeNull();
    await new Promise((done) => setTimeout(done, 300));
    expect(jsonLines(node.lines())).toEqual([]);
  }, 30_000);

  it("an unknown level: exit 2 in one line naming the levels", async () => {
    const r = await cli(["serve", "--port", "0", "--log-level", "loud"], { cwd: tempDir() });
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(
      /--log-level: expected one of fatal, error, warn, info, debug, trace, silent.*"loud"/,
    );
  }, 30_000);

  it("still logs a 5xx as an error with the request id the client sent", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(
          ...String(chunk)
            .split("\n")
            .filter((l) => l !== ""),
        );
        done();
      },
    });
    const gone = await startOrigin((_req, res) => {
      res.end();
    });
    await gone.close(); // nothing listens there now: the proxy answers 502
    const proxy = await startProxy(gone.url, { logger: pino({ level: "warn" }, sink) });
    cleanup.push(() => proxy.close());
    const r = await fetch(`${proxy.url}/x`, { headers: { "x-request-id": "req-502" } });
    expect(r.status).toBe(502);
    expect(r.headers.get("x-request-id")).toBeNull();
    const logged = await until("the error logged", () =>
      lines.length > 0 ? lines.map((l) => JSON.parse(l)) : undefined,
    );
    expect(logged).toEqual([
      expect.objectContaining({ level: 50, msg: "request failed", reqId: "req-502", status: 502 }),
    ]);
  }, 30_000);

  it("in a node of tenants, each request's line names its tenant", async () => {
    const dir = tempDir();
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const origin = await startOrigin((_req, res) => {
      res.writeHead(200, { "cache-control": "max-age=60" });
      res.end("ok");
    });
    cleanup.push(() => origin.close());
    const state = `${dir}/state.db`;
    const created = await cli([
      "tenants",
      "create",
      "acme",
      "--origin",
      origin.url,
      "--json",
      "--state",
      state,
    ]);
    const { key } = JSON.parse(created.stdout);
    const node = await serve(
      ["--state", state, "--log-level", "info"],
      /tenants:\s+(http:\/\/[^/\s]+)\//,
    );
    await fetch(`${node.url}/hello`, { headers: { "x-edgecache-key": key } }).then((r) => r.text());
    const logged = await until("the request logged", () =>
      jsonLines(node.lines()).find((l) => l.msg === "request" && l.url === "/hello"),
    );
    expect(logged).toMatchObject({ tenant: "acme", status: 200 });
    expect(JSON.stringify(jsonLines(node.lines()))).not.toContain(key);
  }, 30_000);
});
