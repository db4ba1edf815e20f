// EaselClient against a scripted server: a fake WebSocket and a fake fetch.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CloseCode,
  EaselClient,
  EaselError,
  FrameType,
  State,
  decodeMessage,
  encodeMessage,
  listPipelines,
  request,
  sessionSocketUrl,
} from "../../transport/web/static/easel-client.mjs";

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Wait until `check()` is truthy, turning the event loop (bounded, no sleeps). */
async function until(check, what = "condition") {
  for (let i = 0; i < 2000; i += 1) {
    if (check()) return;
    await tick();
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A scripted engine: REST answers from `fetch`, sockets from `WebSocket`. */
function fakeEngine({ limits = { max_inflight: 1 }, drain = "latest", failCreate = null } = {}) {
  const engine = { sockets: [], requests: [], sessions: 0, failCreate };

  engine.fetch = async (url, init) => {
    const body = init.body ? JSON.parse(init.body) : undefined;
    engine.requests.push({ url, method: init.method, headers: init.headers, body });
    const json = (status, value) => ({
      ok: status < 400,
      status,
      statusText: "",
      text: async () => (value === undefined ? "" : JSON.stringify(value)),
    });
    if (init.method === "POST" && url.endsWith("/api/v1/sessions")) {
      if (engine.failCreate) return json(engine.failCreate.status, engine.failCreate.problem);
      engine.sessions += 1;
      return json(201, { id: `s${engine.sessions}`, token: `t${engine.sessions}` });
    }
    if (init.method === "DELETE") return json(204);
    if (url.endsWith("/api/v1/pipelines")) return json(200, { items: [{ name: "imagefx" }], total: 1 });
    return json(404, { code: "not_found", detail: "nothing here", status: 404 });
  };

  engine.WebSocket = class FakeSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.sent = [];
      this.closed = null;
      engine.sockets.push(this);
    }

    send(data) {
      this.sent.push(decodeMessage(data));
    }

    close(code = 1000, reason = "") {
      this.closed = { code, reason, by: "client" };
      setTimeout(() => this.onclose?.({ code, reason }), 0);
    }

    // --- the server's side ---
    deliver(type, header, payload) {
      this.onmessage({ data: encodeMessage(type, header, payload).slice().buffer });
    }

    welcome(extra = {}) {
      const id = new URL(this.url).pathname.split("/")[4];
      this.deliver(FrameType.WELCOME, {
        session: id,
        resume: `resume-${id}-${engine.sockets.length}`,
        pipeline: "imagefx",
        drain,
        params: { effect: "none" },
        limits: { max_frame: 1024, max_header: 64, ...limits },
        ...extra,
      });
    }

    drop(code, reason = "") {
      this.closed = { code, reason, by: "server" };
      this.onclose({ code, reason });
    }

    frames(type) {
      return this.sent.filter((frame) => frame.type === type);
    }
  };

  engine.last = () => engine.sockets.at(-1);
  return engine;
}

async function connect(engine, options = {}) {
  let client;
  const opening = new Promise((resolve, reject) => {
    client = new EaselClient("http://engine.test:8080/", {
      WebSocket: engine.WebSocket,
      fetch: engine.fetch,
      minDelay: 1,
      maxDelay: 2,
      ...options,
    });
    client.open().then(resolve, reject);
  });
  await until(() => engine.sockets.length > 0, "a socket");
  engine.last().welcome();
  const welcome = await opening;
  return { client, welcome };
}

test("the socket URL is the session's own endpoint with its token", () => {
  assert.equal(
    sessionSocketUrl("https://h.example/base/", "a b", "t/1"),
    "wss://h.example/base/api/v1/sessions/a%20b/ws?token=t%2F1",
  );
  assert.equal(sessionSocketUrl("http://127.0.0.1:1", "s", "t"), "ws://127.0.0.1:1/api/v1/sessions/s/ws?token=t");
});

test("connect creates the session over REST, then attaches with the easel.v1 subprotocol", async () => {
  const engine = fakeEngine();
  const { client, welcome } = await connect(engine, {
    pipeline: "imagefx",
    drain: "latest",
    params: { effect: "invert" },
    apiKey: "k1",
  });
  const [create] = engine.requests;
  assert.equal(create.method, "POST");
  assert.equal(create.url, "http://engine.test:8080/api/v1/sessions");
  assert.deepEqual(create.body, { pipeline: "imagefx", drain: "latest", params: { effect: "invert" } });
  assert.equal(create.headers.Authorization, "Bearer k1");
  assert.equal(engine.last().url, "ws://engine.test:8080/api/v1/sessions/s1/ws?token=t1");
  assert.deepEqual(engine.last().protocols, ["easel.v1"]);
  assert.equal(welcome.session, "s1");
  assert.equal(welcome.created, true);
  assert.equal(welcome.resumed, false);
  assert.equal(client.state, State.OPEN);
  assert.equal(client.sessionId, "s1");
  assert.equal(client.limits.max_frame, 1024);
  await client.close();
});

test("frames carry increasing seq, ct, ts and per-frame params; results are dispatched", async () => {
  const engine = fakeEngine();
  const { client } = await connect(engine);
  const results = [];
  client.on("result", (detail) => results.push(detail));
  const a = await client.sendFrame(new Uint8Array([1, 2]), { ct: "image/png" });
  const b = await client.sendFrame(new Uint8Array(12), { ct: "raw/rgb8", w: 2, h: 2, params: { effect: "blur" } });
  assert.deepEqual([a, b], [0, 1]);
  const [first, second] = engine.last().frames(FrameType.FRAME);
  assert.equal(first.header.seq, 0);
  assert.equal(first.header.ct, "image/png");
  assert.equal(typeof first.header.ts, "number");
  assert.deepEqual([...first.payload], [1, 2]);
  assert.deepEqual(second.header, { seq: 1, ct: "raw/rgb8", ts: second.header.ts, w: 2, h: 2, params: { effect: "blur" } });
  assert.equal(client.inflight, 2);

  engine.last().deliver(
    FrameType.RESULT,
    { seq: 1, ct: "image/png", t: { queue_ms: 1, pipeline_ms: 2, total_ms: 3 }, superseded: 1 },
    new Uint8Array([7]),
  );
  assert.equal(results.length, 1);
  assert.equal(results[0].seq, 1);
  assert.equal(results[0].superseded, 1);
  assert.deepEqual(results[0].timings, { queue_ms: 1, pipeline_ms: 2, total_ms: 3 });
  assert.deepEqual([...results[0].payload], [7]);
  assert.ok(results[0].rtt >= 0);
  assert.equal(client.inflight, 0, "a result answers its frame and supersedes the ones before");
  await client.close();
});

test("under `all` sending waits for room: at most limits.max_inflight unanswered frames", async () => {
  const engine = fakeEngine({ drain: "all", limits: { max_inflight: 2 } });
  const { client } = await connect(engine, { drain: "all" });
  const sent = [];
  const sending = [0, 1, 2, 3].map((i) => client.sendFrame(new Uint8Array([i]), { ct: "image/png" }).then((seq) => sent.push(seq)));
  await until(() => sent.length === 2, "two frames sent");
  for (let i = 0; i < 20; i += 1) await tick();
  assert.equal(sent.length, 2, "the third frame waits");
  assert.equal(engine.last().frames(FrameType.FRAME).length, 2);

  engine.last().deliver(FrameType.RESULT, { seq: 0, ct: "image/png", superseded: 0 }, new Uint8Array([0]));
  await until(() => sent.length === 3, "a third frame after one answer");
  for (let i = 0; i < 20; i += 1) await tick();
  assert.equal(sent.length, 3);

  engine.last().deliver(FrameType.ERROR, { code: "bad_content", message: "no", seq: 1, fatal: false });
  await Promise.all(sending);
  assert.deepEqual(sent, [0, 1, 2, 3]);
  assert.equal(client.inflight, 2);
  await client.close();
});

test("ERROR frames become error events with their code, message and seq", async () => {
  const engine = fakeEngine();
  const { client } = await connect(engine);
  const errors = [];
  client.on("error", (error) => errors.push(error));
  engine.last().deliver(FrameType.ERROR, { code: "pipeline_error", message: "it broke", seq: 4, fatal: false });
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof EaselError);
  assert.equal(errors[0].code, "pipeline_error");
  assert.equal(errors[0].message, "it broke");
  assert.equal(errors[0].seq, 4);
  assert.equal(errors[0].fatal, false);
  await client.close();
});

test("CALL resolves with its REPLY's result and rejects with its error", async () => {
  const engine = fakeEngine();
  const { client } = await connect(engine);
  const stats = client.stats();
  const params = client.setParams({ effect: "sketch" });
  const bad = client.call("session.nope");
  const calls = engine.last().frames(FrameType.CALL);
  assert.deepEqual(calls.map((c) => c.header.method), ["session.stats", "session.params", "session.nope"]);
  assert.deepEqual(calls[1].header.args, { set: { effect: "sketch" } });
  const ids = calls.map((c) => c.header.id);
  assert.equal(new Set(ids).size, 3);
  // answers in another order than asked
  engine.last().deliver(FrameType.REPLY, { id: ids[2], error: { code: "not_found", message: "unknown method" } });
  engine.last().deliver(FrameType.REPLY, { id: ids[1], result: { effect: "sketch" } });
  engine.last().deliver(FrameType.REPLY, { id: ids[0], result: { frames_in: 3 } });
  assert.deepEqual(await stats, { frames_in: 3 });
  assert.deepEqual(await params, { effect: "sketch" });
  assert.deepEqual(client.params, { effect: "sketch" });
  await assert.rejects(bad, (error) => error instanceof EaselError && error.code === "not_found");
  await client.close();
});

test("PARAMS is sent as a params map", async () => {
  const engine = fakeEngine();
  const { client } = await connect(engine);
  client.sendParams({ bits: 2 });
  const [params] = engine.last().frames(FrameType.PARAMS);
  assert.deepEqual(params.header, { params: { bits: 2 } });
  await client.close();
});

test("EVENTs are dispatched by name with their data", async () => {
  const engine = fakeEngine();
  const { client } = await connect(engine);
  const events = [];
  client.on("event", (event) => events.push(event));
  engine.last().deliver(FrameType.EVENT, { event: "pipeline.restarting", data: { pipeline: "imagefx" } });
  assert.deepEqual(events, [{ name: "pipeline.restarting", data: { pipeline: "imagefx" } }]);
  await client.close();
});

test("a dropped connection resumes the same session with the resume token", async () => {
  const engine = fakeEngine();
  const { client } = await connect(engine);
  const states = [];
  const opens = [];
  client.on("state", ({ state }) => states.push(state));
  client.on("open", (detail) => opens.push(detail));
  const pending = client.call("session.stats");
  const token = client.session.token;
  engine.last().drop(CloseCode.ABNORMAL);
  await assert.rejects(pending, (error) => error.code === "unavailable");
  await until(() => engine.sockets.length === 2, "a second socket");
  assert.equal(engine.last().url, `ws://engine.test:8080/api/v1/sessions/s1/ws?token=${token}`);
  assert.equal(engine.sessions, 1, "no new session");
  engine.last().welcome();
  assert.equal(opens.length, 1);
  assert.equal(opens[0].resumed, true);
  assert.equal(opens[0].session, "s1");
  assert.equal(client.resumes, 1);
  assert.deepEqual(states, [State.RECONNECTING, State.OPEN]);
  await client.close();
});

test("a session still attached elsewhere (4409) is retried until it frees up", async () => {
  const engine = fakeEngine();
  const { client } = await connect(engine);
  client.reconnect();
  await until(() => engine.sockets.length === 2, "a second socket");
  engine.last().deliver(FrameType.ERROR, { code: "forbidden", message: "attached elsewhere", fatal: true });
  engine.last().drop(CloseCode.ALREADY_ATTACHED);
  await until(() => engine.sockets.length === 3, "a third socket");
  engine.last().welcome();
  await until(() => client.state === State.OPEN, "open again");
  assert.equal(client.sessionId, "s1");
  await client.close();
});

test("a session that is gone (4404) is created anew with the same settings", async () => {
  const engine = fakeEngine();
  const { client } = await connect(engine, { pipeline: "imagefx", params: { effect: "invert" } });
  const opens = [];
  client.on("open", (detail) => opens.push(detail));
  engine.last().deliver(FrameType.ERROR, { code: "not_found", message: "no session", fatal: true });
  engine.last().drop(CloseCode.UNKNOWN_SESSION);
  await until(() => engine.sockets.length === 2, "a second socket");
  assert.equal(engine.sessions, 2);
  // the settings the last WELCOME confirmed
  assert.deepEqual(engine.requests[1].body, { pipeline: "imagefx", drain: "latest", params: { effect: "none" } });
  engine.last().welcome();
  await until(() => opens.length === 1, "open");
  assert.equal(opens[0].created, true);
  assert.equal(opens[0].resumed, false);
  assert.equal(client.sessionId, "s2");
  await client.close();
});

test("attached to a given session, its loss closes the client with not_found", async () => {
  const engine = fakeEngine();
  const { client } = await connect(engine, { session: { id: "given", token: "tok" } });
  assert.equal(engine.requests.length, 0, "no REST call for a given session");
  const closes = [];
  client.on("close", (detail) => closes.push(detail));
  engine.last().drop(CloseCode.UNKNOWN_SESSION);
  assert.equal(closes.length, 1);
  assert.equal(closes[0].error.code, "not_found");
  assert.equal(client.state, State.CLOSED);
  await assert.rejects(client.ready(), (error) => error.code === "closed");
});

test("session.closed then close 1000 ends the client without reconnecting", async () => {
  const engine = fakeEngine();
  const { client } = await connect(engine);
  const closes = [];
  client.on("close", (detail) => closes.push(detail));
  engine.last().deliver(FrameType.EVENT, { event: "session.closed", data: { reason: "deleted" } });
  engine.last().drop(CloseCode.NORMAL, "session closed");
  for (let i = 0; i < 20; i += 1) await tick();
  assert.equal(engine.sockets.length, 1);
  assert.equal(closes.length, 1);
  assert.equal(closes[0].error.code, "session_closed");
});

test("a refused token (fatal unauthorized, 1008) rejects connect", async () => {
  const engine = fakeEngine();
  const opening = EaselClient.connect("http://engine.test:8080", {
    WebSocket: engine.WebSocket,
    fetch: engine.fetch,
    session: { id: "s9", token: "wrong" },
  });
  await until(() => engine.sockets.length === 1, "a socket");
  engine.last().deliver(FrameType.ERROR, { code: "unauthorized", message: "bad token", fatal: true });
  engine.last().drop(CloseCode.POLICY);
  await assert.rejects(opening, (error) => error.code === "unauthorized" && error.message === "bad token");
});

test("a session REST refuses rejects connect with the problem's code and detail", async () => {
  const engine = fakeEngine({
    failCreate: { status: 404, problem: { code: "not_found", detail: "no pipeline 'nope'", status: 404 } },
  });
  await assert.rejects(
    EaselClient.connect("http://engine.test:8080", { WebSocket: engine.WebSocket, fetch: engine.fetch, pipeline: "nope" }),
    (error) => error instanceof EaselError && error.code === "not_found" && error.status === 404 && /nope/.test(error.message),
  );
  assert.equal(engine.sockets.length, 0);
});

test("an overloaded engine (503) is retried", async () => {
  const engine = fakeEngine({ failCreate: { status: 503, problem: { code: "overloaded", detail: "full" } } });
  const client = new EaselClient("http://engine.test:8080", {
    WebSocket: engine.WebSocket,
    fetch: engine.fetch,
    minDelay: 1,
    maxDelay: 2,
  });
  const opening = client.open();
  await until(() => engine.requests.length >= 2, "a second try");
  engine.failCreate = null;
  await until(() => engine.sockets.length === 1, "a socket");
  engine.last().welcome();
  const welcome = await opening;
  assert.equal(welcome.session, "s1");
  await client.close();
});

test("close({ discard: true }) deletes the session", async () => {
  const engine = fakeEngine();
  const { client } = await connect(engine);
  const closes = [];
  client.on("close", (detail) => closes.push(detail));
  await client.close({ discard: true });
  assert.deepEqual(engine.last().closed, { code: 1000, reason: "client closed", by: "client" });
  const deletion = engine.requests.at(-1);
  assert.equal(deletion.method, "DELETE");
  assert.equal(deletion.url, "http://engine.test:8080/api/v1/sessions/s1");
  await until(() => closes.length === 1, "close event");
  assert.equal(client.state, State.CLOSED);
  assert.equal(engine.sockets.length, 1, "no reconnect after close");
});

test("REST helpers: listPipelines, and problems as EaselError", async () => {
  const engine = fakeEngine();
  const items = await listPipelines("http://engine.test:8080", { fetch: engine.fetch });
  assert.deepEqual(items, [{ name: "imagefx" }]);
  await assert.rejects(
    request("http://engine.test:8080", "GET", "/api/v1/nothing", undefined, { fetch: engine.fetch }),
    (error) => error.code === "not_found" && error.status === 404 && error.message === "nothing here",
  );
  const unreachable = async () => {
    throw new TypeError("fetch failed");
  };
  await assert.rejects(
    request("http://engine.test:8080", "GET", "/api/v1/pipelines", undefined, { fetch: unreachable }),
    (error) => error.code === "unavailable",
  );
});
