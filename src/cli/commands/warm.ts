import { readFileSync } from "node:fs";
import { defineCommand } from "citty";
import { envVar } from "../environment.ts";
import { MANY } from "../flags.ts";
import { CliFailure, EXIT, usageError } from "../run.ts";
import { NODE_ARGS, type NodeClient, nodeClient } from "./node-client.ts";

const args = {
  urls: {
    type: "positional",
    required: false,
    description: "Paths of the node (/v1/users?limit=10) or full URLs to fetch through the cache",
    valueHint: `url${MANY}`,
  },
  file: {
    type: "string",
    description: "A file of URLs, one a line (# starts a comment); - reads standard input",
    valueHint: "path",
  },
  concurrency: {
    type: "string",
    description: "Requests at once (default 4)",
    valueHint: "n",
  },
  key: {
    type: "string",
    description: "A tenant's API key, sent with each URL (default: EDGECACHE_KEY)",
    valueHint: "key",
  },
  json: { type: "boolean", description: "Print the summary and each URL's outcome as JSON" },
  ...NODE_ARGS,
} as const;

/** How a warmed URL came back. */
type Outcome = "stored" | "cached" | "uncacheable" | "failed";

interface Warmed {
  url: string;
  status: number;
  outcome: Outcome;
  cacheStatus?: string;
  error?: string;
}

/** `edgecache warm`: fetches URLs through a running node so the next reads are hits. */
export const warm = defineCommand({
  meta: {
    name: "warm",
    description: "Fetch URLs through a running node so that later reads are hits",
  },
  args,
  async run({ args: a }) {
    const concurrency = a.concurrency === undefined ? 4 : Number(a.concurrency);
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
      throw usageError(`--concurrency: expected 1 to 64, got ${a.concurrency}`);
    }
    const urls = [...a._, ...(a.file ? readUrls(a.file) : [])];
    if (urls.length === 0) throw usageError("expected URLs as arguments or --file");
    for (const u of urls) {
      if (!u.startsWith("/") && !/^https?:\/\//i.test(u)) {
        throw usageError(
          `expected paths starting with "/" or http(s) URLs, got ${JSON.stringify(u)}`,
        );
      }
    }
    const node = nodeClient(a);
    const key = a.key || envVar("EDGECACHE_KEY") || undefined;
    const started = performance.now();
    const progress = progressBar(urls.length);
    const results: Warmed[] = new Array(urls.length);
    let next = 0;
    const worker = async () => {
      while (next < urls.length) {
        const i = next++;
        results[i] = await warmOne(node, urls[i]!, key);
        progress.tick();
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, urls.length) }, worker));
    progress.done();
    const seconds = (performance.now() - started) / 1000;
    const count = (o: Outcome) => results.filter((r) => r.outcome === o).length;
    const summary = {
      urls: urls.length,
      stored: count("stored"),
      cached: count("cached"),
      uncacheable: count("uncacheable"),
      failed: count("failed"),
      seconds: Math.round(seconds * 1000) / 1000,
    };
    if (a.json) console.log(JSON.stringify({ ...summary, results }, null, 2));
    else {
      for (const r of results) {
        if (r.outcome === "failed")
          console.log(`failed: ${r.url}: ${r.error ?? `HTTP ${r.status}`}`);
        if (r.outcome === "uncacheable")
          console.log(`not stored: ${r.url} (${r.cacheStatus ?? "no Cache-Status"})`);
      }
      console.log(
        `warmed ${summary.urls} URLs in ${seconds.toFixed(1)} s: ${summary.stored} stored, ${summary.cached} already cached, ${summary.uncacheable} not stored, ${summary.failed} failed`,
      );
    }
    if (summary.failed > 0) process.exitCode = EXIT.failed;
  },
});

async function warmOne(node: NodeClient, url: string, key: string | undefined): Promise<Warmed> {
  let res: Response;
  try {
    res = await node.get(url, key);
    await res.arrayBuffer();
  } catch (err) {
    // An unreachable node fails the whole command; other errors fail only this URL.
    if (err instanceof CliFailure && err.exitCode === EXIT.unreachable) throw err;
    return { url, status: 0, outcome: "failed", error: String(err) };
  }
  const cacheStatus = res.headers.get("cache-status") ?? undefined;
  const base = { url, status: res.status, ...(cacheStatus && { cacheStatus }) };
  if (res.status >= 400) return { ...base, outcome: "failed" };
  // RFC 9211: "hit" when it was already there, "stored" when this fetch put it there.
  const params = (cacheStatus ?? "").split(";").map((p) => p.trim());
  if (params.includes("hit")) return { ...base, outcome: "cached" };
  if (params.includes("stored")) return { ...base, outcome: "stored" };
  return { ...base, outcome: "uncacheable" };
}

/** Lines of a URL file: blank lines and # comments skipped. */
function readUrls(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path === "-" ? 0 : path, "utf8");
  } catch (err) {
    throw usageError(`--file: cannot read ${path} (${(err as { code?: string }).code ?? err})`);
  }
  return text
    .split("\n")
    .map((l) => l.replace(/#.*$/, "").trim())
    .filter((l) => l !== "");
}

/**
 * On a terminal, a bar redrawn in place on stderr; elsewhere (a log, a pipe) a line at
 * every tenth of the way, so a long run still shows it is moving.
 */
function progressBar(total: number) {
  const tty = process.stderr.isTTY === true;
  const width = 30;
  let done = 0;
  let lastTenth = 0;
  return {
    tick() {
      done++;
      if (tty) {
        const filled = Math.round((width * done) / total);
        process.stderr.write(
          `\r[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total}`,
        );
      } else if (Math.floor((10 * done) / total) > lastTenth) {
        lastTenth = Math.floor((10 * done) / total);
        process.stderr.write(`warming: ${done}/${total}\n`);
      }
    },
    done() {
      if (tty) process.stderr.write("\n");
    },
  };
}
