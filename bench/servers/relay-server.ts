/**
 * Child process of bench/regions.ts: relays (bench/lib/relay.ts) in a process of their
 * own, so their timers are not late behind the driver's clients and oracle. Starts one
 * relay per `--target host:port` (at 0 ms), prints `{"url": <control>, "ports": [...]}` and
 * takes commands over HTTP: `POST /rtt?relay=i&ms=40`, `POST /partition?relay=i`,
 * `POST /heal?relay=i`.
 *
 *   node --import tsx bench/servers/relay-server.ts --target 127.0.0.1:6379 --target 127.0.0.1:6379
 */
import { createServer } from "node:http";
import { setPriority } from "node:os";
import { parseArgs } from "node:util";
import { Relay } from "../lib/relay.ts";
import { serveForParent } from "./lifecycle.ts";

const { values } = parseArgs({ options: { target: { type: "string", multiple: true } } });
const targets = (values.target ?? []).map((t) => {
  const [host, port] = t.split(":");
  if (!host || !(Number(port) > 0))
    throw new Error(`[bench] [relay-server] --target: expected host:port, got ${t}`);
  return { host, port: Number(port) };
});
// The relays stand for the network: on a busy machine they should not wait for a core
// behind the nodes they delay. Raising priority needs privileges; without, it stays as is.
try {
  setPriority(-10);
} catch {}
const relays = await Promise.all(targets.map((target) => Relay.start({ target, rttMs: 0 })));

const server = createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://x");
  const relay = relays[Number(url.searchParams.get("relay"))];
  if (req.method !== "POST" || !relay) {
    res.writeHead(404).end();
    return;
  }
  if (url.pathname === "/rtt") relay.rttMs = Number(url.searchParams.get("ms"));
  else if (url.pathname === "/partition") relay.partition();
  else if (url.pathname === "/heal") relay.heal();
  else {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(204).end();
});
serveForParent(server, { ports: relays.map((r) => r.port) });
