/**
 * Byte strings in one body, each after its length (uint32, big-endian): how the Durable
 * Object tier sends keys and packed entries to its objects without base64 or JSON around
 * the bytes. An empty frame is a real value (a missing entry, say), not the end.
 */

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** The frames in one buffer; strings go as UTF-8. */
export function encodeFrames(frames: readonly (Uint8Array | string)[]): Uint8Array {
  const parts = frames.map((f) => (typeof f === "string" ? utf8.encode(f) : f));
  const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.byteLength, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const part of parts) {
    view.setUint32(at, part.byteLength);
    out.set(part, at + 4);
    at += 4 + part.byteLength;
  }
  return out;
}

/** The frames of what `encodeFrames` wrote. Throws when a length runs past the end. */
export function decodeFrames(bytes: Uint8Array): Uint8Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frames: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.byteLength) {
    if (at + 4 > bytes.byteLength) throw new TypeError("frame length cut short");
    const length = view.getUint32(at);
    if (at + 4 + length > bytes.byteLength) throw new TypeError("frame runs past the end");
    frames.push(bytes.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  return frames;
}

/** A frame as UTF-8 text. */
export function frameText(frame: Uint8Array): string {
  return utf8Decoder.decode(frame);
}
