import { request } from "node:http";
import { describe, expect, it } from "vitest";
import { proxied, cacheStatusOf as status } from "../../app/proxy/harness.ts";
import { exchange } from "./raw-client.ts";

// Interim responses (RFC 9110 15.2) through the Node proxy, from a real origin that sends
// 103 Early Hints before its final response.

interface Reply {
  interim: { status: number; headers: Record<string, unknown> }[];
  status: number;
  headers: Record<string, unknown>;
  text: string;
}

/** A GET that records the interim responses node:http's client reports before the final one. */
function withInterim(url: string, method = "GET", body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const interim: Reply["interim"] = [];
    const req = request(url, { method });
    req.on("information", (info) =>
      interim.push({ status: info.statusCode, headers: info.headers }),
    );
    req.once("error", reject);
    req.once("response", async (res) => {
      let text = "";
      for await (const chunk of res) text += chunk;
      resolve({ interim, status: res.statusCode!, headers: res.headers, text });
    });
    req.end(body);
  });
}

const LINK = "</style.css>; rel=preload; as=style";

describe("interim responses (RFC 9110 15.2)", () => {
  it("passes a 103 Early Hints on to the client, never stores it, and keeps its fields out of the stored response", async () => {
    const { origin, proxy } = await proxied((req, res) => {
      res.writeEarlyHints({ link: LINK, "x-hint": "early" });
      res.writeHead(200, { "cache-control": "max-age=60", "content-type": "text/plain" });
      res.end(`final ${req.url}`);
    });
    const miss = await withInterim(`${proxy.url}/hinted`);
    expect(miss.interim).toHaveLength(1);
    expect(miss.interim[0]!.status).toBe(103);
    expect(miss.interim[0]!.headers.link).toBe(LINK);
    expect(miss.interim[0]!.headers["x-hint"]).toBe("early");
    expect(miss.status).toBe(200);
    expect(miss.text).toBe("final /hinted");
    expect(miss.headers.link).toBeUndefined();
    expect(miss.headers["x-hint"]).toBeUndefined();
    const hit = await withInterim(`${proxy.url}/hinted`);
    expect(status(hit)).toMatch(/^edgecache; hit/);
    expect(hit.interim).toEqual([]);
    expect(hit.headers["x-hint"]).toBeUndefined();
    expect(origin.count()).toBe(1);
  });

  it("passes a 103 on for a write too, which goes straight to the origin", async () => {
    const { proxy } = await proxied((_, res) => {
      res.writeEarlyHints({ link: LINK });
      res.writeHead(201);
      res.end("created");
    });
    const reply = await withInterim(`${proxy.url}/items`, "POST", "{}");
    expect(reply.status).toBe(201);
    expect(reply.interim.map((i) => i.status)).toEqual([103]);
  });

  it("answers Expect: 100-continue with one 100 Continue, not a second relayed from the origin", async () => {
    const { origin, proxy } = await proxied((req, res) => {
      res.writeHead(201, { "content-type": "text/plain" });
      res.end(`got ${req.body}`);
    });
    const { port, host } = new URL(proxy.url);
    for (const method of ["POST", "PUT"]) {
      const bytes = `${method} /upload HTTP/1.1\r\nHost: ${host}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello`;
      const { replies } = await exchange(Number(port), bytes, [method]);
      expect(
        replies.map((r) => r.status),
        method,
      ).toEqual([100, 201]);
      expect(replies[1]!.body.toString()).toBe("got hello");
    }
    expect(origin.count()).toBe(2);
  });
});
