/** A reply recorded from edgecache, replayed by the bare server (see bare-server.ts). */
export interface RecordedReply {
  status: number;
  /** Header names as sent, without the ones node:http adds itself (see HOP_HEADERS). */
  headers: Record<string, string>;
  /** Base64 of the body bytes. */
  body: string;
}

/** Headers node:http writes on its own for both servers; recording them would double them. */
export const HOP_HEADERS = new Set(["date", "connection", "keep-alive", "transfer-encoding"]);
