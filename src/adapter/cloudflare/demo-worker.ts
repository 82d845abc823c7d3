// The Worker `npm run dev` and `npm run deploy` run (wrangler.jsonc's `main`): the demo
// data API over D1, seeded with the demo's users and orders on first start, with change
// capture installed, so a write made with `wrangler d1 execute` is seen too.

import { d1CaptureInstalled, installD1Capture } from "../../database/d1/change-table.ts";
import { demoViews } from "../../demo/seed.ts";
import { seedD1Demo } from "../../demo/seed-d1.ts";
import { edgecacheWorker } from "./worker.ts";

export { ChangeLogObject } from "./change-log-object.ts";

export default edgecacheWorker({
  views: demoViews,
  prepare: async (env) => {
    await seedD1Demo(env.DB);
    if (!(await d1CaptureInstalled(env.DB))) await installD1Capture(env.DB);
  },
  // The cron trigger (wrangler.jsonc) keeps these and the 50 most read keys in the tiers.
  warm: { urls: ["/v1/orders?sort=-total&limit=20", "/v1/usersWithOrders?limit=20"] },
});
