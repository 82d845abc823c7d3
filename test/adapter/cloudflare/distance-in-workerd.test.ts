import { afterAll, expect, it } from "vitest";
import type { Row } from "../../../src/core/data/query.ts";
import { type EdgecacheWorkers, startEdgecacheWorkers } from "./edgecache-workers.ts";

// The edgecache Worker far from its Durable Object (test/adapter/cloudflare/distance.ts), inside workerd.

let w: EdgecacheWorkers | undefined;
afterAll(async () => {
  await w?.close();
});

it("lease mode, 300 ms from the object: writes queued behind slow writes keep the lease (none refused)", async () => {
  w = await startEdgecacheWorkers({
    names: ["far"],
    mode: "lease",
    leaseMs: 2000,
    distance: { far: { object: 300 } },
  });
  const list = (await (await w.fetch("far", "/v1/users?limit=12&sort=id")).json()) as {
    data: Row[];
  };
  // One isolate's writes run one after another, each about three round trips (turn,
  // append, release or sync): the last starts long after the lease its request began with.
  const statuses = await Promise.all(
    list.data.map(async (user, i) => {
      const res = await w!.fetch("far", `/v1/users/${user.id}`, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ lastName: `Queued${i}` }),
      });
      return res.status;
    }),
  );
  expect(statuses).toEqual(list.data.map(() => 200));
}, 90_000);
