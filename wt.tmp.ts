import { startEdgecacheWorkers } from "./test/worker/edgecache-workers.ts";
const w = await startEdgecacheWorkers({ names: ["a"], demo: { users: 200, orders: 1000 } });
const f = async (p: string, init?: RequestInit) => { const r = await w.fetch("a", p, init); await r.text(); return r.headers.get("cache-status") ?? String(r.status); };
const pages = [0, 20, 40, 60].map((o) => `/v1/orders?sort=-createdAt&status=pending&offset=${o}`);
const users = (await (await w.fetch("a", "/v1/users?limit=5")).json() as any).data.map((u: any) => u.id);
for (const p of pages) await f(p);
for (let i = 0; i < 3; i++) {
  const st = await f("/v1/orders", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ id: `n${i}`, userId: users[i], total: 5, status: "pending", createdAt: "2999-01-01T00:00:00Z" }) });
  console.log("post", st);
  for (const p of pages) console.log(p, await f(p));
}
const s = await (await w.fetch("a", "/_edgecache/stats")).json() as any;
console.log({ patches: s.patches, invalidations: s.invalidations, fenced: s.fenced, refused: s.refused, writes: s.writes, recent: JSON.stringify(s.recent ?? s.changes)?.slice(0, 600) });
await w.close();
