// EaselClient against a real engine: EASEL_URL names it (the Python test suite starts
// one and runs these; by hand: `scripts/serve` and EASEL_URL=http://127.0.0.1:8080).
// Uses node's own WebSocket where it has one (22+, or 20 with --experimental-websocket),
// else (or with EASEL_NODE_WEBSOCKET=shim) the small one beside this file.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  EaselClient,
  EaselError,
  State,
  createSession,
  deleteSession,
  listPipelines,
} from "../../transport/web/static/easel-client.mjs";
import { NodeWebSocket } from "./node-websocket.mjs";

const URL_ = process.env.EASEL_URL;
const skip = URL_ ? false : "EASEL_URL is not set: no engine to talk to";
const WebSocketImpl =
  process.env.EASEL_NODE_WEBSOCKET === "shim" ? NodeWebSocket : (globalThis.WebSocket ?? NodeWebSocket);

/** `EaselClient.connect` to the engine under test. */
const connect = (options) => EaselClient.connect(URL_, { WebSocket: WebSocketImpl, ...options });

/** The next `type` event of `client` that `match` accepts. */
function next(client, type, match = () => true) {
  return new Promise((resolve) => {
    const off = client.on(type, (detail) => {
      if (match(detail)) {
        off();
        resolve(detail);
      }
    });
  });
}

/** A w×h raw/rgb8 image of one colour. */
function solid(w, h, [r, g, b]) {
  const bytes = new Uint8Array(w * h * 3);
  for (let i = 0; i < bytes.length; i += 3) bytes.set([r, g, b], i);
  return bytes;
}

test("the pipelines are listed with their params schema", { skip }, async () => {
  const pipelines = await listPipelines(URL_);
  const imagefx = pipelines.find((p) => p.name === "imagefx");
  assert.ok(imagefx, "imagefx runs");
  assert.ok(imagefx.params_schema.properties.effect.enum.includes("invert"));
});

test("a frame goes through imagefx and comes back inverted, with timings", { skip }, async () => {
  const client = await connect({ pipeline: "imagefx", params: { effect: "invert" } });
  try {
    assert.equal(client.state, State.OPEN);
    assert.equal(client.pipeline, "imagefx");
    assert.equal(client.drain, "latest");
    assert.equal(client.limits.max_inflight, 1);
    const answer = next(client, "result");
    const seq = await client.sendFrame(solid(4, 3, [10, 20, 30]), { ct: "raw/rgb8", w: 4, h: 3 });
    const result = await answer;
    assert.equal(result.seq, seq);
    assert.equal(result.ct, "raw/rgb8");
    assert.equal(result.w, 4);
    assert.equal(result.h, 3);
    assert.deepEqual([...result.payload.subarray(0, 6)], [245, 235, 225, 245, 235, 225]);
    for (const key of ["queue_ms", "pipeline_ms", "total_ms"]) assert.equal(typeof result.timings[key], "number");
    assert.ok(result.rtt >= 0);
  } finally {
    await client.close({ discard: true });
  }
});

test("under `all` every frame is answered, in order, never more in flight than allowed", { skip }, async () => {
  const client = await connect({ pipeline: "imagefx", drain: "all", params: { effect: "grayscale" } });
  try {
    const limit = client.limits.max_inflight;
    assert.ok(limit >= 1);
    const seqs = [];
    client.on("result", ({ seq }) => seqs.push(seq));
    let peak = 0;
    const frames = 24;
    for (let i = 0; i < frames; i += 1) {
      await client.sendFrame(solid(16, 16, [i * 10, 0, 0]), { ct: "raw/rgb8", w: 16, h: 16 });
      peak = Math.max(peak, client.inflight);
    }
    while (seqs.length < frames) await next(client, "result");
    assert.deepEqual(seqs, [...Array(frames).keys()]);
    assert.ok(peak <= limit, `peak ${peak} > max_inflight ${limit}`);
    const stats = await client.stats();
    assert.equal(stats.frames_in, frames);
    assert.equal(stats.frames_out, frames);
    assert.equal(stats.superseded, 0);
  } finally {
    await client.close({ discard: true });
  }
});

test("CALLs: pipeline.info, session.params, and a refused change", { skip }, async () => {
  const client = await connect({ pipeline: "imagefx" });
  try {
    const info = await client.pipelineInfo();
    assert.equal(info.name, "imagefx");
    assert.ok(info.params_schema.properties.strength);
    const params = await client.setParams({ effect: "posterize", bits: 2 });
    assert.equal(params.effect, "posterize");
    assert.equal(params.bits, 2);
    assert.deepEqual(await client.call("session.params"), params);
    await assert.rejects(client.setParams({ strength: 7 }), (error) => {
      assert.ok(error instanceof EaselError);
      assert.equal(error.code, "bad_params");
      assert.match(error.message, /strength/);
      return true;
    });
    await assert.rejects(client.call("session.nope"), (error) => error.code === "not_found");
  } finally {
    await client.close({ discard: true });
  }
});

test("PARAMS changes what the next frame gets", { skip }, async () => {
  const client = await connect({ pipeline: "imagefx" });
  try {
    client.sendParams({ effect: "invert" });
    const answer = next(client, "result");
    await client.sendFrame(solid(2, 2, [0, 0, 0]), { ct: "raw/rgb8", w: 2, h: 2 });
    assert.deepEqual([...(await answer).payload.subarray(0, 3)], [255, 255, 255]);
  } finally {
    await client.close({ discard: true });
  }
});

test("a broken frame gets an ERROR naming it, and the connection lives on", { skip }, async () => {
  const client = await connect({ pipeline: "imagefx" });
  try {
    const failed = next(client, "error");
    const seq = client.sendFrameNow(new Uint8Array(5), { ct: "raw/rgb8", w: 2, h: 2 });
    const error = await failed;
    assert.equal(error.code, "bad_content");
    assert.equal(error.seq, seq);
    assert.equal(client.inflight, 0);
    const answer = next(client, "result");
    await client.sendFrame(solid(2, 2, [1, 2, 3]), { ct: "raw/rgb8", w: 2, h: 2 });
    assert.equal((await answer).seq, seq + 1);
  } finally {
    await client.close({ discard: true });
  }
});

test("a dropped connection resumes the same session with its params", { skip }, async () => {
  const client = await connect({ pipeline: "imagefx", params: { effect: "invert" } });
  try {
    const id = client.sessionId;
    const resumed = next(client, "open");
    client.reconnect();
    const welcome = await resumed;
    assert.equal(welcome.resumed, true);
    assert.equal(welcome.session, id);
    assert.equal(welcome.params.effect, "invert");
    assert.equal(client.resumes, 1);
    const answer = next(client, "result");
    await client.sendFrame(solid(2, 2, [255, 255, 255]), { ct: "raw/rgb8", w: 2, h: 2 });
    assert.deepEqual([...(await answer).payload.subarray(0, 3)], [0, 0, 0]);
  } finally {
    await client.close({ discard: true });
  }
});

test("an existing session is attached by id and token", { skip }, async () => {
  const created = await createSession(URL_, { pipeline: "passthrough" });
  const client = await connect({ session: { id: created.id, token: created.token } });
  try {
    assert.equal(client.sessionId, created.id);
    assert.equal(client.pipeline, "passthrough");
    const answer = next(client, "result");
    await client.sendFrame(solid(1, 1, [9, 8, 7]), { ct: "raw/rgb8", w: 1, h: 1 });
    assert.deepEqual([...(await answer).payload], [9, 8, 7]);
  } finally {
    await client.close({ discard: true });
  }
});

test("a deleted session says session.closed and the client closes for good", { skip }, async () => {
  const client = await connect({ pipeline: "passthrough" });
  const event = next(client, "event", ({ name }) => name === "session.closed");
  const closed = next(client, "close");
  await deleteSession(URL_, client.sessionId);
  assert.ok((await event).data.reason);
  const detail = await closed;
  assert.equal(detail.code, 1000);
  assert.equal(detail.error.code, "session_closed");
  assert.equal(client.state, State.CLOSED);
});

test("refusals: an unknown pipeline over REST, a wrong token on the socket", { skip }, async () => {
  await assert.rejects(connect({ pipeline: "no-such-pipeline" }), (error) => {
    assert.ok(error instanceof EaselError);
    assert.equal(error.status, 422);
    assert.match(error.message, /no-such-pipeline/);
    return true;
  });
  const created = await createSession(URL_, { pipeline: "passthrough" });
  try {
    await assert.rejects(
      connect({ session: { id: created.id, token: "wrong" } }),
      (error) => error.code === "unauthorized",
    );
    await assert.rejects(
      connect({ session: { id: "no-such-session", token: "x" } }),
      (error) => error.code === "not_found",
    );
  } finally {
    await deleteSession(URL_, created.id);
  }
});
