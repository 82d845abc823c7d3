import { expect, it } from "vitest";
import { RecentTimes } from "../../../src/core/time/recent-times.ts";

it("answers the least, longest and mean of the last 16 samples, 0 when none", () => {
  const t = new RecentTimes();
  expect([t.size, t.full, t.least(), t.longest(), t.mean()]).toEqual([0, false, 0, 0, 0]);
  t.add(5);
  t.add(1);
  expect([t.least(), t.longest(), t.mean()]).toEqual([1, 5, 3]);
  // A spike is forgotten once 16 later samples came.
  t.add(400);
  for (let i = 0; i < 15; i++) t.add(2);
  expect([t.size, t.full, t.longest()]).toEqual([16, true, 400]);
  t.add(3);
  expect([t.size, t.least(), t.longest()]).toEqual([16, 2, 3]);
  expect(t.mean()).toBeCloseTo((15 * 2 + 3) / 16);
});
