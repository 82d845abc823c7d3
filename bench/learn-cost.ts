/**
 * What learned invalidation costs a write, by the size of the cache: a PATCH through
 * `edgecache proxy` (in process) to an origin of list pages, with learning off (the
 * baseline, measured in the same run) and on, after caching n pages of one route. Each
 * write waits for the last one's learning to finish, so the time is the write's own: what
 * it does before its answer (finding what acting rules match) and what delays the answer.
 *
 *   npx tsx bench/learn-cost.ts                     # 2,000 and 20,000 cached pages
 *   npx tsx bench/learn-cost.ts --pages 500,5000 --writes 200 --out /tmp/learn-cost
 */
import { createServer, request, type Server } from "node:http";
import { parseArgs } from "node:util";
import { createNodeProxy } from "../src/adapter/node/modes/proxy.ts";
import { makeTmpDir, runBench } from "./lib/processes.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { fail, positiveInt, readFlags } from "./lib/settings.ts";

const options = readFlags(() => {
  const { values } = parseArgs({
    options: {
      pages: { type: "string", default: "2000,20000" },
      writes: { type: "string", default: "100" },
      out: { type: "string", default: "bench/results/learn-cost" },
    },
  });
  const pages = values.pages.split(",").map((n) => positiveInt("pages", n));
  if (pages.length === 0) fail("--pages: expected sizes such as 2000,20000");
  return { pages, writes: positiveInt("writes", values.writes), out: values.out };
});

/** Twenty rows a page; a PATCH answers the row, and changes nothing the pages show. */
function startOrigin(): Promise<Server> {
  const origin = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://origin");
    res.writeHead(200, {
      "content-type": "application/json",
      "cache-control": "public, max-age=600",
    });
    if (req.method === "PATCH") {
      req.resume();
      res.end(JSON.stringify({ id: url.pathname.split("/").pop(), name: "x" }));
      return;
    }
    const page = Number(url.searchParams.get("page") ?? 0);
    const rows = Array.from({ length: 20 }, (_, i) => page * 20 + i);
    res.end(JSON.stringify({ data: rows.map((id) => ({ id, name: `n${id}` })) }));
  });
  return new Promise((done) => origin.listen(0, "127.0.0.1", () => done(origin)));
}

/** One request over HTTP; answers its time to the end of the response, in ms. */
function timed(url: string, method = "GET"): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const headers = method === "PATCH" ? { "content-type": "application/json" } : undefined;
    const req = request(url, { method, headers }, (res) => {
      res.resume();
      res.on("end", () => resolve(performance.now() - started));
    });
    req.on("error", reject);
    req.end(method === "PATCH" ? "{}" : undefined);
  });
}

interface CostRecord {
  pages: number;
  learning: boolean;
  p50Ms: number;
  p90Ms: number;
}

async function measure(originUrl: string, pages: number, learning: boolean): Promise<CostRecord> {
  const node = await createNodeProxy({
    origins: [{ origin: originUrl }],
    cacheFile: false,
    port: 0,
    cwd: makeTmpDir(),
    // The per-second budget lets every write learn, as a busy minute would spread them.
    ...(learning && { learn: { perSecond: 1000 } }),
  });
  const { url } = await node.listen();
  try {
    for (let i = 0; i < pages; i += 50) {
      const batch = Array.from({ length: Math.min(50, pages - i) }, (_, k) => i + k);
      await Promise.all(batch.map((p) => timed(`${url}/api/items?page=${p}`)));
    }
    const times: number[] = [];
    for (let i = 0; i < options.writes; i++) {
      times.push(await timed(`${url}/api/items/${i * 7}`, "PATCH"));
      await node.cache.drain();
    }
    times.sort((a, b) => a - b);
    const at = (q: number) => Math.round(times[Math.floor(q * (times.length - 1))]! * 100) / 100;
    return { pages, learning, p50Ms: at(0.5), p90Ms: at(0.9) };
  } finally {
    await node.close();
  }
}

runBench(async () => {
  const command = `npx tsx bench/learn-cost.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(" ")}` : ""}`;
  const origin = await startOrigin();
  const originUrl = `http://127.0.0.1:${(origin.address() as { port: number }).port}`;
  const records: CostRecord[] = [];
  try {
    for (const pages of options.pages) {
      for (const learning of [false, true]) {
        const r = await measure(originUrl, pages, learning);
        records.push(r);
        console.log(
          `${pages} pages, learning ${learning ? "on" : "off"}: PATCH p50 ${r.p50Ms} ms, p90 ${r.p90Ms} ms`,
        );
      }
    }
  } finally {
    origin.close();
  }
  const rows = options.pages.map((pages) => {
    const off = records.find((r) => r.pages === pages && !r.learning)!;
    const on = records.find((r) => r.pages === pages && r.learning)!;
    const ratio = Math.round((on.p50Ms / off.p50Ms) * 10) / 10;
    return `| ${pages} | ${off.p50Ms} / ${off.p90Ms} | ${on.p50Ms} / ${on.p90Ms} | ${ratio}× |`;
  });
  const git = gitState();
  const md = `# What learned invalidation costs a write

Command: \`${command}\` (${describeCode(git)}), ${new Date().toISOString()}.
A PATCH through \`edgecache proxy\` (in process, memory tier) to a local origin, ${options.writes}
writes one at a time, each after the last one's learning finished, with that many list
pages of the route cached. Learning off is the baseline of the same run.

| cached pages | learning off, p50 / p90 ms | learning on, p50 / p90 ms | p50, on / off |
| ---: | ---: | ---: | ---: |
${rows.join("\n")}
`;
  const path = writeResults(
    options.out,
    { command, date: new Date().toISOString(), git, options, records },
    md,
  );
  console.log(`\n${md}\nwrote ${path}.json and .md`);
});
