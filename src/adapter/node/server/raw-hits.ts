import { channel } from "node:diagnostics_channel";
import { type IncomingHttpHeaders, type Server, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { memoize } from "../../../core/memo.ts";
import type { HitReply, HitRequest } from "./hit-reply.ts";

/**
 * Cache hits answered straight from the socket, before node:http parses anything: node:http
 * costs most of a hit's CPU, the cache lookup a few percent.
 *
 * Why this cannot smuggle or answer what node:http would answer differently: the raw path
 * reads only requests in a strict subset of what llhttp accepts, and reads each the way
 * llhttp does. A request it answers is `GET`/`HEAD`, HTTP/1.1, an origin-form target of RFC
 * 3986 characters, CRLF-terminated lines of `token ":" visible-ASCII`, exactly one Host, no
 * repeated field, and nothing that frames a body (Content-Length other than 0,
 * Transfer-Encoding) or changes the exchange (Expect, Upgrade, a Connection other than
 * keep-alive). So the message ends at its first empty line (RFC 9112 6.3: no framing, no
 * body), where every conforming parser ends it too. At the first byte sequence outside that
 * subset (bare CR or LF, obs-fold, whitespace before a colon, an oversized head or one not
 * complete after one more read, a request that is not a hit) the connection goes to node:http for good, with every byte from
 * the start of that request unread, so llhttp sees exactly the stream it would have seen
 * from those boundaries, and decides (a 400, a 431, a close) as if it had read it all.
 *
 * Pipelined requests keep their order: those answered here are answered synchronously,
 * before anything after them is read, and node:http's listener takes its turns per
 * connection (in-order.ts), so a hit after a write is looked up once the write is done.
 */

/** Longer heads are node:http's (its own limit, maxHeaderSize, is 16 KiB). */
export const MAX_RAW_HEAD = 8192;
/** More fields than this are node:http's (it drops those past maxHeadersCount, 2000). */
const MAX_RAW_FIELDS = 100;
/** Replies up to this size go out as one buffer; larger ones as several (writev). */
const JOIN_LIMIT = 65_536;
/** RFC 9110 5.6.2 token (a field name). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** RFC 9112 3.2.1 origin-form: absolute-path ["?" query], of RFC 3986 pchar, "/" and "?". */
const ORIGIN_FORM = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*$/;
/** RFC 9110 5.5 field value, limited to visible ASCII, SP and HTAB (obs-text is node's). */
const FIELD_VALUE = /^[\t\x20-\x7e]*$/;
/** What node:http refuses to send (validateHeaderValue); such a reply is node:http's to fail. */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** Response fields with which node:http frames the reply itself; never in a cached reply. */
const FRAMING = new Set(["connection", "keep-alive", "transfer-encoding", "trailer", "expect"]);
/**
 * node:http closes an idle connection this long after its advertised keep-alive timeout
 * (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER), so that clients close first (RFC 9112 9.5).
 */
const KEEP_ALIVE_SLACK_MS = 1000;
/** Instrumentation listening here expects to see every request: it gets node:http. */
const requestStart = channel("http.server.request.start");

export interface RawRequest extends HitRequest {
  method: "GET" | "HEAD";
  url: string;
  /** Frozen: a head seen before gives the same object (see parseHead). */
  headers: Readonly<IncomingHttpHeaders>;
  /** The head's length, its empty line included. */
  length: number;
}

/**
 * Heads read before: a client on a keep-alive connection mostly repeats its head byte for
 * byte, and a lookup costs a fraction of reading it again. Bounded in count and length.
 */
const readHeadMemo = memoize((head) => readHead(head), {
  size: 1000,
  maxLength: 2048,
  keep: (req) => req !== undefined,
  // A copy: a slice may keep the whole read (up to 64 KiB) alive as long as the memo.
  own: (head) => Buffer.from(head, "latin1").toString("latin1"),
});

/**
 * Reads the request head starting at `start` of `text` (bytes as latin1), or undefined when
 * it is not one the raw path may answer (see the module comment): incomplete, too large,
 * or anything but a plain GET or HEAD. The request is frozen and may be shared.
 */
export function parseHead(text: string, start: number): RawRequest | undefined {
  const end = text.indexOf("\r\n\r\n", start);
  if (end < 0 || end + 4 - start > MAX_RAW_HEAD) return undefined;
  return readHeadMemo(start === 0 && end + 4 === text.length ? text : text.slice(start, end + 4));
}

/** `head`: a whole head, up to and with its empty line. */
function readHead(head: string): RawRequest | undefined {
  const end = head.length - 4;
  const lineEnd = head.indexOf("\r\n");
  const sp = head.indexOf(" ");
  if (sp < 0 || sp + 1 >= lineEnd - 9 || !head.startsWith(" HTTP/1.1", lineEnd - 9)) {
    return undefined;
  }
  const method = head.slice(0, sp);
  if (method !== "GET" && method !== "HEAD") return undefined;
  const url = head.slice(sp + 1, lineEnd - 9);
  if (!ORIGIN_FORM.test(url)) return undefined;
  // Null prototype: a field named like an Object method is only a field.
  const headers: Record<string, string> = Object.create(null);
  let fields = 0;
  for (let pos = lineEnd + 2; pos < end; ) {
    const eol = head.indexOf("\r\n", pos);
    const colon = head.indexOf(":", pos);
    if (colon < 0 || colon > eol || ++fields > MAX_RAW_FIELDS) return undefined;
    const name = head.slice(pos, colon);
    const raw = head.slice(colon + 1, eol);
    // A repeated field is joined or dropped by node:http depending on its name: not ours.
    if (!TOKEN.test(name) || !FIELD_VALUE.test(raw)) return undefined;
    const lower = name.toLowerCase();
    if (headers[lower] !== undefined || lower === "__proto__") return undefined;
    // RFC 9110 5.5: leading and trailing whitespace is not part of the value.
    const value = raw.trim();
    switch (lower) {
      case "content-length":
        // llhttp takes spaces after the number, but answers 400 to a tab there.
        if (value !== "0" || /\t$/.test(raw)) return undefined;
        break;
      case "connection":
        if (value.toLowerCase() !== "keep-alive") return undefined;
        break;
      case "transfer-encoding":
      case "expect":
      case "upgrade":
        return undefined;
    }
    headers[lower] = value;
    pos = eol + 2;
  }
  if (!headers.host) return undefined;
  return Object.freeze({ method, url, headers: Object.freeze(headers), length: head.length });
}

/** A CR not before LF, or an LF not after CR (the last byte may be a CR whose LF is to come). */
const BARE_CR_LF = /\r(?!\n)|(?<!\r)\n/;

/** Whether `text` from `start` may be the beginning of a head the raw path answers. */
function isPartialHead(text: string, start: number): boolean {
  const rest = text.endsWith("\r") ? text.slice(start, -1) : text.slice(start);
  return rest.length < MAX_RAW_HEAD && !rest.includes("\r\n\r\n") && !BARE_CR_LF.test(rest);
}

/** The date a reply without one gets, as node:http writes it; rebuilt once a second. */
let dateSecond = -1;
let dateLine = "";

function nowSecond(): number {
  return Math.floor(Date.now() / 1000);
}

function dateHeader(): string {
  const second = nowSecond();
  if (second !== dateSecond) {
    dateSecond = second;
    dateLine = `Date: ${new Date(second * 1000).toUTCString()}\r\n`;
  }
  return dateLine;
}

/**
 * The status line and headers node:http writes for `res.writeHead(status, headers)` on a
 * keep-alive HTTP/1.1 connection (_http_outgoing.js `_storeHeader`): the fields in order,
 * then Date unless there is one, Connection and Keep-Alive; Content-Length is the caller's.
 * Undefined for a field node:http would refuse or frame differently (then it answers).
 */
export function serializeHead(
  status: number,
  headers: Record<string, string>,
  keepAliveMs: number,
): Buffer | undefined {
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "unknown"}\r\n`;
  let dated = false;
  for (const name in headers) {
    const value = headers[name]!;
    const lower = name.toLowerCase();
    if (!TOKEN.test(name) || BAD_VALUE.test(value) || FRAMING.has(lower)) return undefined;
    if (lower === "date") dated = true;
    head += `${name}: ${value}\r\n`;
  }
  if (!dated) head += dateHeader();
  head += `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveMs / 1000)}\r\n\r\n`;
  return Buffer.from(head, "latin1");
}

/**
 * The bytes of plain hits, per shared header memo (which ticks with Age and ttl): the reply
 * to a GET (head and body joined when small, so a hit is one prebuilt buffer) and to a HEAD.
 */
const plainReplies = new WeakMap<
  Record<string, string>,
  { get: Uint8Array[]; head: Uint8Array[]; keepAliveMs: number; dated: boolean; second: number }
>();

/**
 * The bytes that answer `req` with `reply`, as node:http would send them; or undefined.
 * Shared between requests: never to be changed.
 */
export function replyBytes(
  reply: HitReply,
  method: string,
  keepAliveMs: number,
): readonly Uint8Array[] | undefined {
  if (!reply.plain) {
    const head = serializeHead(reply.status, reply.headers, keepAliveMs);
    return head && withBody(head, reply, method, false);
  }
  let memo = plainReplies.get(reply.headers);
  // A head without the origin's Date carries node:http's, which is the current second's.
  if (!memo || memo.keepAliveMs !== keepAliveMs || !(memo.dated || memo.second === nowSecond())) {
    const head = serializeHead(reply.status, reply.headers, keepAliveMs);
    if (!head) return undefined;
    memo = {
      get: withBody(head, reply, "GET", true),
      head: withBody(head, reply, "HEAD", true),
      keepAliveMs,
      dated: reply.headers.date !== undefined,
      second: dateSecond,
    };
    plainReplies.set(reply.headers, memo);
  }
  return method === "HEAD" ? memo.head : memo.get;
}

function withBody(head: Buffer, reply: HitReply, method: string, join: boolean): Uint8Array[] {
  // RFC 9110 9.3.2, 15.3.5, 15.4.5: no content after a HEAD, a 204 or a 304.
  const bodyless = method === "HEAD" || reply.status === 204 || reply.status === 304;
  if (bodyless || !reply.body || reply.body.byteLength === 0) return [head];
  const bytes = head.byteLength + reply.body.byteLength;
  return join && bytes <= JOIN_LIMIT
    ? [Buffer.concat([head, reply.body], bytes)]
    : [head, reply.body];
}

export interface RawHitsOptions {
  /** The server whose keepAliveTimeout and `timeout` event the raw connections honour. */
  server: Server;
  /** Gives a connection to node:http (its own `connection` listener). */
  handOver(socket: Socket): void;
  /** The reply bytes for a request, or undefined to let node:http answer it. */
  answer(req: RawRequest, keepAliveMs: number): readonly Uint8Array[] | undefined;
}

/**
 * The connections answered on the raw path: each stays raw while it sends plain hits, then
 * goes to node:http at its first other request (or when idle before its first).
 */
export class RawHits {
  readonly #options: RawHitsOptions;
  readonly #sockets = new Set<Socket>();

  constructor(options: RawHitsOptions) {
    this.#options = options;
  }

  /** Takes a new connection (before node:http has seen it). */
  accept(socket: Socket): void {
    const { keepAliveTimeout, maxRequestsPerSocket, timeout } = this.#options.server;
    // A limit on requests per connection, an inactivity timeout, no keep-alive timeout:
    // rules only node:http keeps.
    if (keepAliveTimeout <= 0 || maxRequestsPerSocket || timeout) {
      this.#options.handOver(socket);
      return;
    }
    this.#sockets.add(socket);
    new RawConnection(socket, this.#options, () => this.#sockets.delete(socket));
  }

  /** Ends every raw connection (server.closeAllConnections). */
  closeAll(): void {
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  /** Ends raw connections once their replies are out (server.close, closeIdleConnections). */
  closeIdle(): void {
    for (const socket of this.#sockets) {
      socket.pause();
      if (socket.writableLength === 0) socket.destroy();
      else socket.destroySoon();
    }
  }
}

class RawConnection {
  readonly #socket: Socket;
  readonly #options: RawHitsOptions;
  readonly #release: () => void;
  #answered = 0;
  /** The start of a head whose end has not come yet. */
  #partial: Buffer | undefined;
  readonly #onData = (chunk: Buffer) => this.#read(chunk);
  readonly #onDrain = () => {
    this.#socket.setTimeout(this.#options.server.keepAliveTimeout + KEEP_ALIVE_SLACK_MS);
    this.#socket.resume();
  };
  readonly #onTimeout = () => {
    // Idle before any request or within a head: node:http's headersTimeout takes it from here.
    if (this.#answered === 0 || this.#partial) this.#handOver(this.#partial);
    // Idle after a reply: node:http's socketOnTimeout does this.
    else if (!this.#options.server.emit("timeout", this.#socket)) this.#socket.destroy();
  };
  readonly #onEnd = () => this.#socket.end();
  readonly #onError = () => this.#socket.destroy();
  readonly #onClose = () => this.#release();

  constructor(socket: Socket, options: RawHitsOptions, release: () => void) {
    this.#socket = socket;
    this.#options = options;
    this.#release = release;
    socket.setTimeout(options.server.keepAliveTimeout + KEEP_ALIVE_SLACK_MS);
    socket.on("data", this.#onData);
    socket.on("timeout", this.#onTimeout);
    socket.on("end", this.#onEnd);
    socket.on("error", this.#onError);
    socket.on("close", this.#onClose);
  }

  #read(data: Buffer): void {
    // A head split across reads gets one more read to complete it, so pipelined requests
    // cut at any byte stay raw; a head trickling in slower goes to node:http's timeouts.
    const split = this.#partial;
    const chunk = split ? Buffer.concat([split, data]) : data;
    this.#partial = undefined;
    const text = chunk.toString("latin1");
    const keepAliveMs = this.#options.server.keepAliveTimeout;
    const out: Uint8Array[] = [];
    let pos = 0;
    while (pos < text.length) {
      const req = requestStart.hasSubscribers ? undefined : parseHead(text, pos);
      const reply = req && this.#options.answer(req, keepAliveMs);
      if (!req || !reply) {
        this.#write(out);
        const rest = pos === 0 ? chunk : chunk.subarray(pos);
        if (!req && !(split && pos === 0) && isPartialHead(text, pos)) {
          this.#partial = Buffer.from(rest);
          return;
        }
        this.#handOver(rest);
        return;
      }
      for (const part of reply) out.push(part);
      this.#answered++;
      pos += req.length;
    }
    this.#write(out);
    if (this.#socket.writableNeedDrain) {
      // Backpressure: read nothing more until the client has taken these replies; node:http
      // arms no keep-alive timeout while a reply is still being written either.
      this.#socket.pause();
      this.#socket.setTimeout(0);
      this.#socket.once("drain", this.#onDrain);
    }
  }

  #write(parts: Uint8Array[]): void {
    const socket = this.#socket;
    if (parts.length === 0 || !socket.writable) return;
    let bytes = 0;
    for (const part of parts) bytes += part.byteLength;
    if (parts.length === 1) socket.write(parts[0]!);
    else if (bytes <= JOIN_LIMIT) socket.write(Buffer.concat(parts, bytes));
    else {
      socket.cork();
      for (const part of parts) socket.write(part);
      socket.uncork();
    }
  }

  /** node:http takes the connection, `rest` (the bytes from the unanswered request on) first. */
  #handOver(rest: Buffer | undefined): void {
    const socket = this.#socket;
    socket.off("data", this.#onData);
    socket.off("timeout", this.#onTimeout);
    socket.off("end", this.#onEnd);
    socket.off("error", this.#onError);
    socket.off("close", this.#onClose);
    socket.off("drain", this.#onDrain);
    socket.setTimeout(0);
    this.#release();
    if (socket.destroyed) return;
    socket.pause();
    if (rest && rest.length > 0) socket.unshift(rest);
    this.#options.handOver(socket);
    socket.resume();
  }
}
