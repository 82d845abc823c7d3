/**
 * Child process of bench/proxy.ts: the origin behind the caches, a node:http server that
 * answers `GET /api/items/<id>` with a fixed JSON document (about 1.5 KB) that any shared
 * cache may keep for an hour. It counts the requests it answers, so the driver can show
 * that the caches answered the load themselves: `GET /_origin/requests` (not counted)
 * gives `{"requests": n}`. Prints `{"url": ...}` once ready.
 *
 *   node --import tsx bench/servers/proxy-origin.ts
 */
import { createServer } from "node:http";
import { serveForParent } from "./lifecycle.ts";

const ITEM = /^\/api\/items\/(\d+)$/;

let requests = 0;

const server = createServer((req, res) => {
  if (req.url === "/_origin/requests") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ requests }));
    return;
  }
  requests++;
  const id = req.method === "GET" ? req.url?.match(ITEM)?.[1] : undefined;
  if (id === undefined) {
    res.writeHead(404, { "content-type": "application/json" });
    res.end('{"error":"not found"}');
    return;
  }
  const body = item(Number(id));
  res.writeHead(200, {
    "content-type": "application/json; charset=utf-8",
    // RFC 9111 §5.2.2.9 and §5.2.2.1: any cache, shared ones too, may store it for an hour.
    "cache-control": "public, max-age=3600",
    etag: `"item-${id}-v1"`,
    "last-modified": "Sat, 01 Nov 2025 00:00:00 GMT",
    "content-length": body.length,
  });
  res.end(body);
});

/** The same bytes for an id on every request: a product record with some prose. */
function item(id: number): Buffer {
  const doc = {
    id,
    sku: `EC-${String(id).padStart(6, "0")}`,
    name: `Item ${id}: stainless steel water bottle, 750 ml`,
    description:
      "Double-walled and vacuum-insulated: keeps drinks cold for 24 hours or hot for 12. " +
      "Leak-proof lid with a carrying loop, powder-coated finish that does not sweat, " +
      "wide mouth for ice cubes and easy cleaning. Free of BPA. Dishwasher safe (lid only).",
    price: { amount: 2490 + id, currency: "EUR" },
    stock: { warehouse: "FRA-2", available: 120, reserved: 7 },
    categories: ["outdoor", "kitchen", "drinkware"],
    attributes: { colour: "slate", capacityMl: 750, weightG: 340, material: "steel 18/8" },
    ratings: { average: 4.6, count: 1873 },
    variants: ["slate", "sand", "moss", "ink", "coral", "snow"].map((colour, n) => ({
      sku: `EC-${String(id).padStart(6, "0")}-${n + 1}`,
      colour,
      available: 30 * n,
    })),
    shipping: { weightG: 420, dimensionsMm: [80, 80, 275], countries: ["DE", "FR", "NL", "AT"] },
    related: [id + 1, id + 2, id + 3, id + 5, id + 8].map((r) => `/api/items/${r}`),
    updatedAt: "2025-11-01T00:00:00.000Z",
  };
  return Buffer.from(JSON.stringify(doc));
}

serveForParent(server);
