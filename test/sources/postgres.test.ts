import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { createDataApi } from "../../src/app/data-api.ts";
import { Cache } from "../../src/core/cache/index.ts";
import { EdgecacheError } from "../../src/core/errors.ts";
import { isPostgresUrl, postgresSource, redactUrl } from "../../src/sources/postgres.ts";
import { memoryStore } from "../../src/stores/memory.ts";

// What the PostgreSQL source does without a server: options refused at once, an
// unreachable server a 503 with no driver text, passwords never shown.

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("postgres source without a server", () => {
  it("validates its options when the factory is called", async () => {
    await expect(postgresSource({ url: "mysql://x" })).rejects.toThrow(
      /option "url": expected a postgres:\/\/ URL/,
    );
    await expect(postgresSource({ url: "postgres://x", max: 0 })).rejects.toThrow(
      /option "max": expected an integer >= 1/,
    );
    await expect(
      postgresSource({ url: "postgres://x", schema: "" as unknown as string }),
    ).rejects.toThrow(/option "schema"/);
  });

  it("tells URLs from paths, and hides passwords", () => {
    expect(isPostgresUrl("postgres://a@b/c")).toBe(true);
    expect(isPostgresUrl("postgresql://a@b/c")).toBe(true);
    expect(isPostgresUrl("./app.db")).toBe(false);
    expect(redactUrl("postgres://app:s3cret@db:5432/app")).toBe("postgres://app:***@db:5432/app");
    expect(redactUrl("postgres://app@db/app")).toBe("postgres://app@db/app");
  });

  it("answers 503 E_SOURCE_UNAVAILABLE when the server cannot be reached, with no driver text", async () => {
    const port = await closedPort();
    const source = await postgresSource({ url: `postgres://app:s3cret@127.0.0.1:${port}/app` });
    try {
      const error = await source.schema().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EdgecacheError);
      expect((error as EdgecacheError).code).toBe("E_SOURCE_UNAVAILABLE");
      expect((error as Error).message).toBe(
        "[edgecache] [postgres] the database cannot be reached",
      );
      // Through the data API: createDataApi needs the schema, so a node does not start.
      const cache = new Cache({ tiers: [memoryStore()] });
      await expect(createDataApi({ source, cache })).rejects.toMatchObject({
        code: "E_SOURCE_UNAVAILABLE",
      });
    } finally {
      await source.close();
    }
  }, 20_000);
});
