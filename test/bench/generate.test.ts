import { describe, expect, it } from "vitest";
import { generateSequence, type InitialData, type Op } from "../../bench/workload/generate.ts";

const NAMES = ["Ann", "Bob", "Cleo", "Dan", "Eve"];
const STATUSES = ["pending", "paid", "shipped", "cancelled"];

const data: InitialData = {
  users: Array.from({ length: 200 }, (_, i) => ({
    id: `${1000 + i}-u`,
    firstName: NAMES[i % NAMES.length]!,
    lastName: `${NAMES[(i * 7) % NAMES.length]!}son`,
  })),
  orders: Array.from({ length: 1000 }, (_, i) => ({
    id: `o-${String(i).padStart(6, "0")}`,
    userId: `${1000 + (i % 200)}-u`,
    status: STATUSES[i % STATUSES.length]!,
  })),
};

/** The ops up to and with the `n`-th write. */
function upToWrite(ops: readonly Op[], n: number): Op[] {
  let writes = 0;
  const at = ops.findIndex((op) => op.kind === "write" && ++writes === n);
  return ops.slice(0, at + 1);
}

const writes = (ops: readonly Op[]) => ops.filter((op) => op.kind === "write").length;

describe("generateSequence's warm part (bench:writes' ratio measure)", () => {
  const warm = { writes: 60, writeRatio: 0.2 };
  const low = generateSequence(data, { requests: 2000, writeRatio: 0.01, seed: 7, warm });
  const high = generateSequence(data, { requests: 2000, writeRatio: 0.1, seed: 7, warm });

  it("is the same requests whatever the share after it, up to its last write", () => {
    const part = upToWrite(low, warm.writes);
    expect(writes(part)).toBe(warm.writes);
    expect(part.at(-1)!.kind).toBe("write");
    expect(upToWrite(high, warm.writes)).toEqual(part);
  });

  it("is followed by the requests asked for, at each one's share", () => {
    const lowRest = low.slice(upToWrite(low, warm.writes).length);
    const highRest = high.slice(upToWrite(high, warm.writes).length);
    expect(lowRest).toHaveLength(2000);
    expect(highRest).toHaveLength(2000);
    expect(writes(lowRest)).toBeLessThan(60);
    expect(writes(highRest)).toBeGreaterThan(120);
    expect(writes(highRest)).toBeLessThan(280);
  });

  it("refuses a warm part that could never end, or would be none", () => {
    for (const bad of [
      { writes: 10, writeRatio: 0 },
      { writes: 10, writeRatio: Number.NaN },
      { writes: 0, writeRatio: 0.2 },
      { writes: 2.5, writeRatio: 0.2 },
      { writes: Number.POSITIVE_INFINITY, writeRatio: 0.2 },
    ]) {
      expect(
        () => generateSequence(data, { requests: 10, writeRatio: 0.1, warm: bad }),
        JSON.stringify(bad),
      ).toThrow(/warm: expected a whole number of writes above 0/);
    }
  });

  it("leaves a sequence without one as it was: drawn at its share from the start", () => {
    const plain = generateSequence(data, { requests: 2000, writeRatio: 0.1, seed: 7 });
    expect(plain).toHaveLength(2000);
    expect(generateSequence(data, { requests: 2000, writeRatio: 0.1, seed: 7 })).toEqual(plain);
    // The warm part's stream is its own share's: at 0.1 with no warm part, the same draws.
    const warmAtTen = generateSequence(data, {
      requests: 0,
      writeRatio: 0.01,
      seed: 7,
      warm: { writes: writes(plain), writeRatio: 0.1 },
    });
    expect(warmAtTen).toEqual(upToWrite(plain, writes(plain)));
  });
});
