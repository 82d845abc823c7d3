/**
 * The baseline: a bare node:http server (servers/bare-server.ts) replaying one recorded
 * reply of edgecache's, so that it sends the same status, headers and body.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { HOP_HEADERS, type RecordedReply } from "../servers/reply.ts";
import { headerNames, type Reply, request } from "./http.ts";
import { benchServer, type Server, type ServerSpec, startServer } from "./processes.ts";
import { fail } from "./settings.ts";

/**
 * Starts the bare server with `hit` (edgecache's reply to `path`), recorded into `dir`,
 * and checks that it answers `path` with the same bytes; resolves with it and its reply.
 */
export async function startBare(
  hit: Reply,
  path: string,
  dir: string,
  spec: Pick<ServerSpec, "cpu" | "cpuProf">,
): Promise<{ server: Server; copy: Reply }> {
  const reply: RecordedReply = {
    status: hit.status,
    headers: Object.fromEntries(Object.entries(hit.headers).filter(([k]) => !HOP_HEADERS.has(k))),
    body: hit.body.toString("base64"),
  };
  const replyFile = join(dir, "reply.json");
  writeFileSync(replyFile, JSON.stringify(reply));
  const server = await startServer({
    ...spec,
    name: "bare",
    argv: benchServer("bare-server.ts", ["--reply", replyFile]),
  });
  const copy = await request(server.url + path);
  if (!copy.body.equals(hit.body) || headerNames(copy.headers) !== headerNames(hit.headers)) {
    fail("the bare server does not send the bytes edgecache sends; nothing to compare");
  }
  return { server, copy };
}
