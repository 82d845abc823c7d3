/**
 * Child process of bench/hits.ts: the baseline, a bare node:http server answering every
 * request with one recorded reply (status, headers, body) read from `--reply`, so it sends
 * the same bytes as the edgecache hit it was recorded from. Prints `{"url": ...}` once ready.
 *
 *   node --import tsx bench/servers/bare-server.ts --reply /tmp/x/reply.json
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { serveForParent } from "./lifecycle.ts";
import type { RecordedReply } from "./reply.ts";

const { values } = parseArgs({ options: { reply: { type: "string" } } });
if (!values.reply) throw new Error("[bench] [bare-server] expected --reply");

const reply = JSON.parse(readFileSync(values.reply, "utf8")) as RecordedReply;
const body = Buffer.from(reply.body, "base64");
const headers = reply.headers;

// Nothing per request but writing the reply: the ceiling of node:http for these bytes.
const server = createServer((_req, res) => {
  res.writeHead(reply.status, headers);
  res.end(body);
});
serveForParent(server);
