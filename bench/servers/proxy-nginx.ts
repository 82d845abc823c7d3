/**
 * Child process of bench/proxy.ts: nginx (Debian's package, nginx-light is enough) as a
 * caching reverse proxy with `proxy_cache`, one worker, in front of `--origin`. Writes its
 * configuration and all its files into `--dir`, starts nginx in the foreground and prints
 * `{"url": ..., "nginx": "<version>"}` once it accepts connections. It stays in front of
 * nginx as its lifeline: when the driver goes (stdin closes, SIGTERM), it stops nginx.
 *
 *   node --import tsx bench/servers/proxy-nginx.ts --origin http://127.0.0.1:8080 --dir /tmp/x
 *
 * Config choices, for nginx's best figure on equal terms with the node servers:
 * - `master_process on` with `worker_processes 1`: nginx as deployed, a master and one
 *   worker that does all the serving; the driver counts the CPU of the whole tree.
 * - `keepalive_requests` high: by default nginx closes a client connection after 1000
 *   requests, which node:http never does; wrk's connections stay up for every server.
 * - `access_log off`: the node servers log nothing either.
 * - `sendfile off` (nginx's default; Debian's nginx.conf turns it on): a cached reply is
 *   then one write of headers and body; with sendfile, a header write plus a sendfile
 *   from the cache file, which halved nginx's hits per second here.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { freePort, stopChild } from "../lib/processes.ts";
import { onParentGone } from "./lifecycle.ts";

const { values } = parseArgs({
  options: {
    origin: { type: "string" },
    dir: { type: "string" },
  },
});
if (!values.origin || !values.dir) throw new Error("[bench] [nginx] expected --origin and --dir");
const dir = values.dir;
const origin = new URL(values.origin);

const bin = nginxBinary();
const port = await freePort();
mkdirSync(join(dir, "cache"), { recursive: true });
const config = join(dir, "nginx.conf");
writeFileSync(config, nginxConfig({ dir, port, origin: origin.host }));

const test = spawnSync(bin, ["-t", "-q", "-p", dir, "-e", errorLog(), "-c", config], {
  encoding: "utf8",
});
if (test.status !== 0) throw new Error(`[bench] [nginx] bad configuration: ${test.stderr}`);

let stopping = false;
const nginx = spawn(bin, ["-p", dir, "-e", errorLog(), "-c", config], {
  stdio: ["ignore", "inherit", "inherit"],
});
nginx.once("exit", (code, signal) => {
  if (stopping) return;
  console.error(`[bench] [nginx] exited (${code ?? signal}): ${tail(errorLog())}`);
  process.exit(1);
});
onParentGone(async () => {
  stopping = true;
  // SIGTERM is nginx's fast shutdown: the master stops its worker, then exits.
  await stopChild(nginx);
  process.exit(0);
});
await listening(port);
const version = spawnSync(bin, ["-v"], { encoding: "utf8" }).stderr.trim();
process.stdout.write(
  `${JSON.stringify({ url: `http://127.0.0.1:${port}`, nginx: version.replace(/^nginx version: /, "") })}\n`,
);

function nginxConfig(c: { dir: string; port: number; origin: string }): string {
  // Running as root, the worker would drop to nobody and could not use the cache in dir.
  const user = process.getuid?.() === 0 ? "user root;\n" : "";
  return `# Written by bench/servers/proxy-nginx.ts for bench/proxy.ts.
${user}worker_processes 1;
master_process on;
daemon off;
pid ${c.dir}/nginx.pid;
error_log ${c.dir}/error.log warn;

events {
  worker_connections 1024;
}

http {
  access_log off;
  sendfile off;
  keepalive_requests 100000000;
  keepalive_timeout 65s;

  client_body_temp_path ${c.dir}/client_body;
  proxy_temp_path ${c.dir}/proxy_temp;
  fastcgi_temp_path ${c.dir}/fastcgi_temp;
  uwsgi_temp_path ${c.dir}/uwsgi_temp;
  scgi_temp_path ${c.dir}/scgi_temp;

  proxy_cache_path ${c.dir}/cache levels=1:2 keys_zone=bench:10m;

  upstream origin {
    server ${c.origin};
    keepalive 16;
  }

  server {
    listen 127.0.0.1:${c.port};

    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Freshness comes from the origin's Cache-Control (max-age=3600).
      proxy_cache bench;
      add_header X-Cache-Status $upstream_cache_status always;
    }
  }
}
`;
}

function nginxBinary(): string {
  for (const candidate of ["nginx", "/usr/sbin/nginx"]) {
    if (spawnSync(candidate, ["-v"], { stdio: "ignore" }).error === undefined) return candidate;
  }
  throw new Error("[bench] [nginx] nginx is not installed (apt-get install nginx-light)");
}

function errorLog(): string {
  return join(dir, "error.log");
}

function tail(file: string): string {
  try {
    return readFileSync(file, "utf8").trim().split("\n").slice(-5).join("\n");
  } catch {
    return "(no error log)";
  }
}

/** Resolves once the port accepts a connection (nginx prints nothing when it is ready). */
async function listening(p: number): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const up = await new Promise<boolean>((done) => {
      const socket = connect(p, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        done(true);
      });
      socket.once("error", () => done(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`[bench] [nginx] not listening on ${p} after 10 s: ${tail(errorLog())}`);
}
