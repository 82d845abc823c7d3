/**
 * The flags the workload and cluster benchmarks share: the database's size, the request
 * sequences and the load. `--quick` runs 2,000 requests instead of 20,000.
 */
import type { ParseArgsConfig } from "node:util";
import { fail, positiveInt } from "../lib/settings.ts";

export function workloadFlags(defaults: { ratios: string; out: string }) {
  return {
    users: { type: "string", default: "10000" },
    orders: { type: "string", default: "50000" },
    requests: { type: "string" },
    connections: { type: "string", default: "8" },
    ratios: { type: "string", default: defaults.ratios },
    seed: { type: "string", default: "7" },
    out: { type: "string", default: defaults.out },
    quick: { type: "boolean", default: false },
  } as const satisfies ParseArgsConfig["options"];
}

/** The parsed values of `workloadFlags`, turned into numbers and checked. */
export function readWorkloadFlags(values: {
  users: string;
  orders: string;
  requests?: string | undefined;
  connections: string;
  ratios: string;
  seed: string;
  quick: boolean;
}) {
  const writeRatios = values.ratios.split(",").map((r) => {
    const n = Number(r);
    if (r.trim() === "" || !(n >= 0 && n <= 1)) fail(`--ratios: expected numbers 0 to 1, got ${r}`);
    return n;
  });
  return {
    users: positiveInt("users", values.users),
    orders: positiveInt("orders", values.orders),
    requests: positiveInt("requests", values.requests ?? (values.quick ? "2000" : "20000")),
    connections: positiveInt("connections", values.connections),
    writeRatios,
    seed: positiveInt("seed", values.seed),
  };
}

/**
 * `readWorkloadFlags` with smaller defaults, for benchmarks whose servers answer more
 * slowly (workerd, a proxy in front of an origin): 2,000 users and 10,000 orders unless
 * given, and `requests` (quick and full) unless `--requests` is.
 */
export function readSmallWorkloadFlags(
  values: Parameters<typeof readWorkloadFlags>[0],
  requests: { quick: string; full: string },
) {
  return readWorkloadFlags({
    ...values,
    users: values.users === "10000" ? "2000" : values.users,
    orders: values.orders === "50000" ? "10000" : values.orders,
    requests: values.requests ?? (values.quick ? requests.quick : requests.full),
  });
}
