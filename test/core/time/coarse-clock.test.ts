import { afterEach, describe, expect, it, vi } from "vitest";
import { createCache } from "../../../src/core/cache/index.ts";
import { CoarseClock } from "../../../src/core/time/coarse-clock.ts";
import { memoryStore } from "../../../src/stores/memory.ts";

afterEach(() => {
  vi.useRealTimers();
});

describe("the memory hit path's coarse clock", () => {
  it("reads the clock again once a millisecond has passed on the event loop", () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const clock = new CoarseClock();
    expect(clock.now()).toBe(1_000_000);
    vi.setSystemTime(1_000_005); // the time moves, no timer has fired yet
    expect(clock.now()).toBe(1_000_000);
    vi.advanceTimersByTime(1);
    expect(clock.now()).toBe(1_000_006);
  });

  it("reads it again after 1000 readings even when the event loop never turns", () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const clock = new CoarseClock();
    clock.now();
    vi.setSystemTime(1_000_050);
    const readings = Array.from({ length: 1001 }, () => clock.now());
    expect(readings.slice(0, 1000).every((r) => r === 1_000_000)).toBe(true);
    expect(readings[1000]).toBe(1_000_050);
  });

  it("an entry on the cache's own clock stops being served once its ttl has passed", async () => {
    // The clock faked: on a busy machine 20 ms of real time may pass between set and get.
    vi.useFakeTimers({ now: 1_000_000 });
    const cache = createCache({ tiers: [memoryStore()] });
    await cache.set("k", "v", { ttl: 20 });
    expect(await cache.get("k")).toBe("v");
    vi.advanceTimersByTime(40);
    expect(cache.peek("k")).toBeUndefined();
    expect(await cache.get("k")).toBeUndefined();
  });
});
