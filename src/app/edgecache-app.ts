import { Hono } from "hono";
import { type AdminOptions, createAdminApi } from "./admin.ts";
import { dashboardPage } from "./dashboard.ts";
import { notFound, onError } from "./errors.ts";
import { type HealthChecks, healthHandler } from "./health.ts";
import { validUrl } from "./request-target.ts";

/**
 * The app an edgecache server answers with, on any runtime: the admin API and the
 * dashboard under `/_edgecache`, then `routes` (the data API's, or the proxy's), JSON
 * errors everywhere.
 */
export function edgecacheApp(routes: Hono, admin: AdminOptions): Hono {
  const app = new Hono();
  app.onError(onError);
  app.use(validUrl);
  // The dashboard's page (no data in it) at /_edgecache/ too: a sub-app's "/" is /_edgecache.
  app.get("/_edgecache/", dashboardPage);
  app.route("/_edgecache", createAdminApi(admin));
  // Reserved: never handed to the routes (a proxy would forward it to an origin).
  app.all("/_edgecache/*", notFound);
  app.route("/", routes);
  app.notFound(notFound);
  return app;
}

/**
 * The admin routes a server of tenants (Node's and the Worker's) answers before it looks for
 * a key, as `createAdminApi` answers them before its token: the dashboard's page, which holds
 * no data, and `GET /_edgecache/health` with the server's own `checks`, which a load balancer
 * probes with no credentials (or with whatever its client adds). Any key, the operator's
 * token or none gets the same answer, and nothing of a tenant is in it.
 */
export function openAdminRoutes(app: Hono, checks: HealthChecks): void {
  app.get("/_edgecache", dashboardPage);
  app.get("/_edgecache/", dashboardPage);
  app.get("/_edgecache/health", healthHandler(checks));
}
