import { execFileSync, spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./wrangler-dev.ts";

/**
 * A PostgreSQL cluster of a test's own, for fault tests that stop and start the server:
 * the shared one on 5432 is never stopped. Made with initdb as the `postgres` user in a
 * temporary directory, on a free port, its socket in that directory.
 */
export interface PrivatePostgres {
  url: string;
  port: number;
  stop(mode?: "fast" | "immediate"): void;
  start(): void;
  /** Stops and removes the cluster. */
  destroy(): void;
}

/** The binaries of the newest PostgreSQL installed, or undefined when there is none. */
export function postgresBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = join(root, v, "bin");
    if (existsSync(join(bin, "initdb"))) return bin;
  }
  return undefined;
}

/** Runs a PostgreSQL binary as the `postgres` user when this process is root (initdb refuses root). */
function asPostgres(bin: string, args: string[]): void {
  const root = process.getuid?.() === 0;
  const [cmd, argv] = root ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
  const r = spawnSync(cmd, argv, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${bin} ${args.join(" ")}: ${r.stderr || r.stdout}`);
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = postgresBin();
  if (!bin)
    throw new Error(
      "no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)",
    );
  const dir = mkdtempSync(join(tmpdir(), "edgecache-pg-"));
  const data = join(dir, "data");
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    chownSync(dir, uid, gid);
  }
  asPostgres(join(bin, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
  const port = await freePort();
  const options = `-c port=${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off`;
  const ctl = (...args: string[]) => asPostgres(join(bin, "pg_ctl"), ["-D", data, "-w", ...args]);
  const start = () => ctl("-o", options, "-l", join(dir, "log"), "start");
  start();
  let running = true;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    stop(mode = "fast") {
      ctl("-m", mode, "stop");
      running = false;
    },
    start() {
      start();
      running = true;
    },
    destroy() {
      if (running) {
        try {
          ctl("-m", "immediate", "stop");
        } catch {}
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
