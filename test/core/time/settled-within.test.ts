import { afterEach, expect, it, vi } from "vitest";
import { settledWithin } from "../../../src/core/time/settled-within.ts";

afterEach(() => {
  vi.restoreAllMocks();
});

it("resolves when the promises settle, failed ones too (not after the minute it allows)", async () => {
  const all = [Promise.resolve(1), Promise.reject(new Error("no"))];
  await expect(settledWithin(all, 60_000)).resolves.toBeUndefined();
});

it("resolves after the time when a promise never settles, and its timer keeps no process alive", async () => {
  const timers = vi.spyOn(globalThis, "setTimeout");
  const waiting = settledWithin([new Promise(() => {})], 20);
  const timer = timers.mock.results[0]!.value as NodeJS.Timeout;
  expect(timer.hasRef()).toBe(false);
  await waiting;
});
