import { describe, expect, it } from "vitest";
import {
  type Fetched,
  keepDue,
  keepPolicy,
  nextDue,
  type UrlReport,
} from "../../src/app/proxy/manifest/keeper.ts";

// keepDue: the manifest's step for a runtime that wakes on an alarm (the Workers' Durable
// Object), on a fake clock. In workerd: test/adapter/cloudflare/manifest-in-workerd.test.ts.

const fresh = (now: number, ttl: number): Fetched => ({
  status: 200,
  cacheStatus: "edgecache; fwd=uri-miss; stored",
  stored: { createdAt: now, freshUntil: now + ttl },
});

describe("keepDue", () => {
  it("fetches only the URLs due, and says when the next one is", async () => {
    let now = 1_000_000;
    const policy = keepPolicy({ now: () => now, random: () => 0 });
    const slots: UrlReport[] = [
      { url: "http://a/1", state: "pending" },
      { url: "http://a/2", state: "cached", nextFetch: now + 5000 },
      { url: "http://a/3", state: "failing", failures: 1, nextFetch: now - 1 },
    ];
    const fetched: string[] = [];
    const saved: string[] = [];
    const next = await keepDue(
      slots,
      async (url) => {
        fetched.push(url);
        return fresh(now, 100_000);
      },
      policy,
      (slot) => saved.push(slot.url),
    );
    expect(fetched).toEqual(["http://a/1", "http://a/3"]);
    expect(saved).toEqual(fetched);
    // Refetched a tenth of the lifetime before expiry; the untouched URL is the earliest.
    expect(slots[0]).toMatchObject({ state: "cached", nextFetch: now + 90_000 });
    expect(slots[2]).toMatchObject({ state: "cached", failures: 0 });
    expect(next).toBe(now + 5000);
    now += 5000;
    expect(nextDue(slots)).toBe(now);
  });

  it("starts no fetch after `until`: the rest stay due for the next run", async () => {
    let now = 0;
    const policy = keepPolicy({ concurrency: 1, now: () => now });
    const slots: UrlReport[] = ["1", "2", "3"].map((n) => ({
      url: `http://a/${n}`,
      state: "pending",
    }));
    const next = await keepDue(
      slots,
      async () => {
        now += 600;
        return fresh(now, 100_000);
      },
      policy,
      undefined,
      1000,
    );
    expect(slots.map((s) => s.state)).toEqual(["cached", "cached", "pending"]);
    expect(next).toBe(0);
  });

  it("holds at most `concurrency` fetches at once", async () => {
    const policy = keepPolicy({ concurrency: 3 });
    const slots: UrlReport[] = Array.from({ length: 10 }, (_, i) => ({
      url: `http://a/${i}`,
      state: "pending",
    }));
    let inflight = 0;
    let most = 0;
    await keepDue(
      slots,
      async () => {
        most = Math.max(most, ++inflight);
        await new Promise((r) => setTimeout(r, 5));
        inflight--;
        return fresh(Date.now(), 100_000);
      },
      policy,
    );
    expect(most).toBe(3);
    expect(slots.every((s) => s.state === "cached")).toBe(true);
  });
});
