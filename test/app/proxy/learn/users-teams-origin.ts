import { createHash } from "node:crypto";
import type { OriginHandler } from "../harness.ts";

/**
 * A small API whose writes change other resources in known ways: users belong to teams;
 * PATCH /api/users/:id changes that user, their profile, their team's member list, the
 * list of users by that team and the list of all users; team pages never change. Every
 * GET carries a strong ETag and answers If-None-Match with 304.
 */
export function usersAndTeams(): { handler: OriginHandler; users: Map<number, User> } {
  const users = new Map<number, User>();
  for (let id = 1; id <= 6; id++) users.set(id, { id, name: `user ${id}`, team: 1 + (id % 2) });
  const teams = new Map([
    [1, { id: 1, name: "one" }],
    [2, { id: 2, name: "two" }],
    [3, { id: 3, name: "three" }],
  ]);
  const read = (path: string, query: URLSearchParams): unknown => {
    let m = path.match(/^\/api\/users\/(\d+)$/);
    if (m) return users.get(Number(m[1]));
    m = path.match(/^\/api\/users\/(\d+)\/profile$/);
    if (m) {
      const u = users.get(Number(m[1]));
      return u && { name: u.name, team: teams.get(u.team)?.name };
    }
    if (path === "/api/users") {
      const team = query.get("team");
      return [...users.values()].filter((u) => team === null || u.team === Number(team));
    }
    m = path.match(/^\/api\/teams\/(\d+)$/);
    if (m) return teams.get(Number(m[1]));
    m = path.match(/^\/api\/teams\/(\d+)\/members$/);
    if (m) return [...users.values()].filter((u) => u.team === Number(m![1])).map((u) => u.name);
    return undefined;
  };
  const handler: OriginHandler = (req, res) => {
    const url = new URL(req.url!, "http://origin");
    if (req.method === "PATCH") {
      const m = url.pathname.match(/^\/api\/users\/(\d+)$/);
      const u = m && users.get(Number(m[1]));
      if (!u) {
        res.writeHead(404).end();
        return;
      }
      Object.assign(u, JSON.parse(req.body) as Partial<User>);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(u));
      return;
    }
    const value = read(url.pathname, url.searchParams);
    if (value === undefined) {
      res.writeHead(404, { "cache-control": "max-age=300" }).end();
      return;
    }
    const body = JSON.stringify(value);
    const etag = `"${createHash("sha1").update(body).digest("hex").slice(0, 16)}"`;
    const headers = { "content-type": "application/json", "cache-control": "max-age=300", etag };
    if (req.headers["if-none-match"] === etag) {
      res.writeHead(304, headers).end();
      return;
    }
    res.writeHead(200, headers).end(body);
  };
  return { handler, users };
}

export interface User {
  id: number;
  name: string;
  team: number;
}
