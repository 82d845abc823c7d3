import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { workerManifest } from "../../../src/adapter/cloudflare/manifest-client.ts";
import {
  adminTokenVariable,
  allowedHostsVariable,
  captureIntervalMs,
  captureSchemaVariable,
  tierShards,
  workerSettings,
} from "../../../src/adapter/cloudflare/variables.ts";
import { hostSet } from "../../../src/app/access.ts";

// Every EDGECACHE_* variable a Worker reads, each with a bad value and the code that reads
// it: each is refused with E_BAD_OPTION naming the variable (a typo must never turn a
// setting off without a word). The list is the source's: a variable read anywhere in the
// Worker's code and missing here fails the test.

type Env = Record<string, unknown>;
const settings = (env: Env) => workerSettings(env as never, {});

const BAD: Record<string, [value: string, read: (env: Env) => unknown]> = {
  EDGECACHE_TTL: ["5m", settings],
  EDGECACHE_MEMORY_BYTES: ["1kb", settings],
  EDGECACHE_KV: ["maybe", settings],
  EDGECACHE_CACHE: ["yes", settings],
  EDGECACHE_LOG_LEVEL: ["loud", settings],
  EDGECACHE_LOG_MODE: ["fast", settings],
  EDGECACHE_LEASE_MS: ["1s", settings],
  EDGECACHE_REGION: ["west europe", settings],
  EDGECACHE_TIER_SHARDS: ["two", (env) => tierShards(env)],
  EDGECACHE_CAPTURE_MS: ["-1", (env) => captureIntervalMs(env, 1000)],
  EDGECACHE_CAPTURE_SCHEMA: ["my schema", captureSchemaVariable],
  EDGECACHE_ADMIN_TOKEN: ["two words", adminTokenVariable],
  EDGECACHE_ALLOWED_HOSTS: ["api.example.com,https://admin.example.com/", allowedHostsVariable],
  EDGECACHE_MANIFEST: ["https://example.com/a\nnot a url", (env) => workerManifest(env, {})],
};

/** The EDGECACHE_* names in the Worker's code (its adapter, logs, stores, objects). */
function variablesInSource(): string[] {
  const root = join(import.meta.dirname, "../../../src");
  const names = new Set<string>();
  for (const dir of ["adapter/cloudflare", "log", "stores", "durable"]) {
    for (const file of readdirSync(join(root, dir), { recursive: true, encoding: "utf8" })) {
      if (!file.endsWith(".ts")) continue;
      const text = readFileSync(join(root, dir, file), "utf8");
      for (const m of text.matchAll(/\bEDGECACHE_[A-Z_]+\b/g)) names.add(m[0]);
    }
  }
  return [...names].sort();
}

describe("every Worker variable is checked", () => {
  it("the table lists every variable the Worker's code reads", () => {
    expect(variablesInSource()).toEqual(Object.keys(BAD).sort());
  });

  const cases = Object.entries(BAD).map(([name, [value, read]]) => [name, value, read] as const);
  it.each(cases)("%s=%j is refused, naming it", (name, value, read) => {
    let thrown: unknown;
    try {
      read({
        [name]: value,
        EDGECACHE_LOG_MODE: name === "EDGECACHE_LOG_MODE" ? value : "follower",
      });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code: "E_BAD_OPTION" });
    expect(String((thrown as Error).message)).toContain(name);
  });

  it("a good value of each is taken", () => {
    expect(
      allowedHostsVariable({ EDGECACHE_ALLOWED_HOSTS: " api.example.com, [::1]:8787 " }),
    ).toEqual(["api.example.com", "[::1]:8787"]);
    expect(adminTokenVariable({ EDGECACHE_ADMIN_TOKEN: "s3cr3t-token" })).toBe("s3cr3t-token");
    expect(adminTokenVariable({})).toBeUndefined();
  });

  it("an empty token is refused, not taken for none (which leaves the admin API to loopback)", () => {
    expect(() => adminTokenVariable({ EDGECACHE_ADMIN_TOKEN: "" })).toThrow(
      /EDGECACHE_ADMIN_TOKEN: set but empty: unset it for loopback-only access, or give a token/,
    );
  });

  it("a token with a space is refused without showing it", () => {
    expect(() => adminTokenVariable({ EDGECACHE_ADMIN_TOKEN: "secret part" })).toThrow(
      /EDGECACHE_ADMIN_TOKEN: expected visible ASCII without spaces .*, got "\(hidden\)"/,
    );
  });

  it("a token no HTTP header can carry (not ASCII, a control character) is refused at start", () => {
    for (const token of ["sécret", "secret\u0001", "токен"]) {
      expect(() => adminTokenVariable({ EDGECACHE_ADMIN_TOKEN: token }), token).toThrow(
        /EDGECACHE_ADMIN_TOKEN: expected visible ASCII without spaces/,
      );
    }
    expect(adminTokenVariable({ EDGECACHE_ADMIN_TOKEN: "a-Z_0.9~+/=!#$" })).toBe("a-Z_0.9~+/=!#$");
  });
});

describe("allowedHosts on a node", () => {
  it("refuses a URL or a path where a host name belongs", () => {
    expect(() => hostSet("server", "allowedHosts", ["https://api.example.com/"])).toThrow(
      /"allowedHosts": expected an array of host names .*, got "https:\/\/api.example.com\/" at allowedHosts\[0\]/,
    );
    expect([...hostSet("server", "allowedHosts", ["API.example.com:8443", "::1"])]).toContain(
      "api.example.com",
    );
  });
});
