import { Hono } from "hono";
import { type AdminOptions, createAdminApi } from "./admin.ts";
import { dashboardPage } from "./dashboard.ts";
import { notFound, onError } from "./errors.ts";
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
