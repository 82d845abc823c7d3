// The Worker `npm run dev` and `npm run deploy` run (wrangler.jsonc's `main`): the demo
// data API over D1, seeded with the demo's users and orders on first start.

import { demoViews } from "../../demo/seed.ts";
import { seedD1Demo } from "../../demo/seed-d1.ts";
import { edgecacheWorker } from "./worker.ts";

export { ChangeLogObject } from "./change-log-object.ts";

export default edgecacheWorker({
  views: demoViews,
  prepare: (env) => seedD1Demo(env.DB),
  // The cron trigger (wrangler.jsonc) keeps these and the 50 most read keys in the tiers.
  warm: { urls: ["/v1/orders?sort=-total&limit=20", "/v1/usersWithOrders?limit=20"] },
});
