import { Redis } from "ioredis";
import { expect, it } from "vitest";
import { startRedis } from "./redis-server.ts";
import { pingRedis, requireRedisServer } from "./services.ts";

const server = await requireRedisServer();

server.describe("startRedis (a private redis-server for fault tests)", () => {
  it("answers at once; pause stalls it, resume brings it back; restart empties it; kill ends it", async () => {
    const redis = await startRedis();
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(await pingRedis(redis.url)).toBeUndefined();

    redis.pause();
    expect(await pingRedis(redis.url)).toMatch(/no reply/);
    redis.resume();
    expect(await pingRedis(redis.url)).toBeUndefined();

    const client = new Redis(redis.url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on("error", () => {});
    await client.set("k", "v");
    client.disconnect();
    await redis.restart();
    const again = new Redis(redis.url);
    expect(await again.get("k")).toBeNull();
    await again.quit();

    await redis.kill();
    expect(await pingRedis(redis.url)).toMatch(/ECONNREFUSED/);
  });

  it("stop() ends a paused server too", async () => {
    const redis = await startRedis();
    redis.pause();
    await redis.stop();
    expect(await pingRedis(redis.url)).toMatch(/ECONNREFUSED/);
  });
});
