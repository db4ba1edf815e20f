// The envelope: encodeMessage / decodeMessage, and frames the Python codec made.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  FrameType,
  MAGIC,
  PRELUDE_SIZE,
  ProtocolError,
  decodeMessage,
  encodeMessage,
} from "../../transport/web/static/easel-client.mjs";

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const fromHex = (text) => new Uint8Array(Buffer.from(text, "hex"));
const vectors = JSON.parse(readFileSync(new URL("./vectors.json", import.meta.url), "utf8"));

test("the prelude: magic, version, type, zero flags, big-endian header length", () => {
  const message = encodeMessage(FrameType.FRAME, { seq: 1 }, new Uint8Array([9, 8, 7]));
  assert.equal(message[0], MAGIC);
  assert.equal(message[1], 1);
  assert.equal(message[2], 0x10);
  assert.equal(message[3], 0);
  const headerLength = new DataView(message.buffer).getUint32(4, false);
  assert.equal(headerLength, message.length - PRELUDE_SIZE - 3);
  assert.deepEqual([...message.subarray(-3)], [9, 8, 7]);
});

test("an empty header is sent as header_len 0", () => {
  const message = encodeMessage(FrameType.CALL, {});
  assert.equal(hex(message), "ea01300000000000");
  assert.deepEqual(decodeMessage(message).header, {});
});

test("decode gives the type's name, the header and a view of the payload", () => {
  const payload = new Uint8Array(1000).fill(5);
  const message = encodeMessage(FrameType.RESULT, { seq: 4, ct: "image/png" }, payload);
  const frame = decodeMessage(message.buffer);
  assert.equal(frame.name, "RESULT");
  assert.deepEqual(frame.header, { seq: 4, ct: "image/png" });
  assert.equal(frame.payload.length, 1000);
  assert.equal(frame.payload.buffer, message.buffer, "the payload is not copied");
});

test("payloads may be an ArrayBuffer or any typed array view", () => {
  const bytes = new Uint16Array([0x0102, 0x0304]);
  const a = encodeMessage(FrameType.FRAME, { seq: 0 }, bytes);
  const b = encodeMessage(FrameType.FRAME, { seq: 0 }, bytes.buffer);
  assert.equal(hex(a), hex(b));
  assert.throws(() => encodeMessage(FrameType.FRAME, {}, "text"), TypeError);
});

for (const [name, bytes, pattern] of [
  ["a short prelude", new Uint8Array([0xea, 1, 0x10]), /no prelude/],
  ["bad magic", fromHex("eb01100000000000"), /bad magic/],
  ["another version", fromHex("ea02100000000000"), /unsupported version 2/],
  ["a header running past the message", fromHex("ea0110000000000580"), /runs past/],
  ["a header that is not a map", fromHex("ea011000000000059401020304"), /map/],
  ["a header that is not msgpack", fromHex("ea01100000000001c1"), /not msgpack/],
]) {
  test(`decode refuses ${name}`, () => {
    assert.throws(() => decodeMessage(bytes), (error) => {
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.code, "bad_frame");
      assert.match(error.message, pattern);
      return true;
    });
  });
}

test("frames made by the Python codec decode to the same header and payload", () => {
  assert.ok(vectors.length >= 10);
  for (const vector of vectors) {
    const frame = decodeMessage(fromHex(vector.message));
    assert.equal(frame.type, vector.type, vector.name);
    assert.deepEqual(frame.header, vector.header, vector.name);
    assert.equal(hex(frame.payload), vector.payload, vector.name);
  }
});

test("client frames encode byte for byte as the Python codec encodes them", () => {
  const clientFrames = vectors.filter((v) => v.direction === "c2s");
  assert.ok(clientFrames.length >= 5);
  for (const vector of clientFrames) {
    const message = encodeMessage(vector.type, vector.header, fromHex(vector.payload));
    assert.equal(hex(message), vector.message, vector.name);
  }
});
