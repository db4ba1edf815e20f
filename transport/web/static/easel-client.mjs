// Easel realtime protocol v1: a client for browsers and node (22 and later as is, 20
// with --experimental-websocket, or any WebSocket implementation passed as the
// `WebSocket` option). One ES module plus the msgpack library beside it; no build
// step. See docs/web.md for a walk-through.
//
//   import { EaselClient } from "./easel-client.mjs";
//   const client = await EaselClient.connect("http://localhost:8080", {
//     pipeline: "imagefx", params: { effect: "sketch" },
//   });
//   client.addEventListener("result", (e) => show(e.detail));
//   await client.sendFrame(jpegBytes, { ct: "image/jpeg" });
//
// Wire format (every WebSocket message is one binary frame):
//   magic 0xEA | version 1 | type | flags | header_len (u32 BE) | msgpack header | payload

import { decode as unpack, encode as pack } from "./vendor/msgpack.mjs";

export const PROTOCOL_VERSION = 1;
export const SUBPROTOCOL = "easel.v1";
export const MAGIC = 0xea;
export const PRELUDE_SIZE = 8;

/** Frame types of protocol v1. */
export const FrameType = Object.freeze({
  HELLO: 0x01,
  WELCOME: 0x02,
  FRAME: 0x10,
  RESULT: 0x11,
  PARAMS: 0x20,
  CALL: 0x30,
  REPLY: 0x31,
  EVENT: 0x40,
  ERROR: 0x7f,
});

/** WebSocket close codes the server uses. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY: 1008,
  TOO_LARGE: 1009,
  INTERNAL: 1011,
  UNKNOWN_SESSION: 4404,
  ALREADY_ATTACHED: 4409,
});

/** Connection states, in the order a client usually goes through them. */
export const State = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  OPEN: "open",
  RECONNECTING: "reconnecting",
  CLOSED: "closed",
});

const TYPE_NAMES = Object.freeze(
  Object.fromEntries(Object.entries(FrameType).map(([name, value]) => [value, name])),
);

/**
 * Anything the server refused or reported: an ERROR frame, a REPLY error, a
 * problem+json answer over REST, or a connection closed for good.
 * `code` is the protocol's error code (`bad_params`, `not_found`, …).
 */
export class EaselError extends Error {
  constructor(code, message, { seq, fatal = false, status, closeCode, detail } = {}) {
    super(message);
    this.name = "EaselError";
    this.code = code;
    this.seq = seq;
    this.fatal = fatal;
    this.status = status;
    this.closeCode = closeCode;
    this.detail = detail;
  }
}

/** A message that breaks the envelope rules (raised by `decodeMessage`). */
export class ProtocolError extends EaselError {
  constructor(message) {
    super("bad_frame", message);
    this.name = "ProtocolError";
  }
}

/** The events an `EaselClient` dispatches carry their data in `detail`. */
export class EaselEvent extends Event {
  constructor(type, detail) {
    super(type);
    this.detail = detail;
  }
}

// --- the envelope -------------------------------------------------------------------

function bytesOf(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("expected bytes: a Uint8Array, an ArrayBuffer or a typed array view");
}

/** One frame as bytes. An empty header is sent as header_len 0. */
export function encodeMessage(type, header = {}, payload = undefined) {
  const packed = header && Object.keys(header).length ? pack(header) : new Uint8Array(0);
  const body = payload === undefined ? new Uint8Array(0) : bytesOf(payload);
  const out = new Uint8Array(PRELUDE_SIZE + packed.length + body.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, MAGIC);
  view.setUint8(1, PROTOCOL_VERSION);
  view.setUint8(2, type);
  view.setUint8(3, 0);
  view.setUint32(4, packed.length, false);
  out.set(packed, PRELUDE_SIZE);
  out.set(body, PRELUDE_SIZE + packed.length);
  return out;
}

/**
 * Decode one message: `{ type, name, header, payload }`; `payload` views `data`.
 * Throws `ProtocolError` for a short prelude, bad magic, another version, a header
 * running past the message or one that is not a msgpack map.
 */
export function decodeMessage(data) {
  const bytes = bytesOf(data);
  if (bytes.length < PRELUDE_SIZE) throw new ProtocolError(`message of ${bytes.length} bytes has no prelude`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint8(0);
  if (magic !== MAGIC) throw new ProtocolError(`bad magic 0x${magic.toString(16)}`);
  const version = view.getUint8(1);
  if (version !== PROTOCOL_VERSION) throw new ProtocolError(`unsupported version ${version}`);
  const type = view.getUint8(2);
  const headerLength = view.getUint32(4, false);
  const end = PRELUDE_SIZE + headerLength;
  if (end > bytes.length) throw new ProtocolError(`header_len ${headerLength} runs past the ${bytes.length}-byte message`);
  let header = {};
  if (headerLength) {
    try {
      header = unpack(bytes.subarray(PRELUDE_SIZE, end));
    } catch (error) {
      throw new ProtocolError(`header is not msgpack: ${error.message}`);
    }
    if (header === null || typeof header !== "object" || Array.isArray(header) || header instanceof Map) {
      throw new ProtocolError("header must be a map with string keys");
    }
  }
  return { type, name: TYPE_NAMES[type] ?? "UNKNOWN", header, payload: bytes.subarray(end) };
}

/** The Date-free clock used for `ts` and round trips, in milliseconds. */
const now = () => performance.now();

// --- REST --------------------------------------------------------------------------

function trimBase(baseUrl) {
  return String(baseUrl).replace(/\/+$/, "");
}

/**
 * One REST call under `/api/v1`: the decoded JSON answer (or `null` for 204).
 * A problem+json answer becomes an `EaselError` with its `code`, `detail` and `status`.
 */
export async function request(baseUrl, method, path, body = undefined, { apiKey, fetch: fetchImpl } = {}) {
  const doFetch = fetchImpl ?? globalThis.fetch;
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  let response;
  try {
    response = await doFetch(trimBase(baseUrl) + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new EaselError("unavailable", `the engine cannot be reached (${error.message})`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let answer = null;
  try {
    answer = text ? JSON.parse(text) : null;
  } catch {
    answer = null;
  }
  if (!response.ok) {
    const code = answer?.code ?? `http_${response.status}`;
    const message = answer?.detail ?? answer?.title ?? (text.slice(0, 200) || response.statusText);
    throw new EaselError(code, message, { status: response.status, detail: answer });
  }
  return answer;
}

/** `POST /api/v1/sessions`: `{ id, token, pipeline, drain, params, ws_url, … }`. */
export function createSession(baseUrl, { pipeline, drain, params } = {}, options = {}) {
  const body = {};
  if (pipeline !== undefined) body.pipeline = pipeline;
  if (drain !== undefined) body.drain = drain;
  if (params !== undefined) body.params = params;
  return request(baseUrl, "POST", "/api/v1/sessions", body, options);
}

/** `DELETE /api/v1/sessions/{id}`. */
export function deleteSession(baseUrl, id, options = {}) {
  return request(baseUrl, "DELETE", `/api/v1/sessions/${encodeURIComponent(id)}`, undefined, options);
}

/** `GET /api/v1/pipelines`: the pipelines, each with its `params_schema`. */
export async function listPipelines(baseUrl, options = {}) {
  const answer = await request(baseUrl, "GET", "/api/v1/pipelines", undefined, options);
  return answer.items;
}

/** The WebSocket URL of a session's own endpoint, with its token for browsers. */
export function sessionSocketUrl(baseUrl, id, token) {
  const url = new URL(`${trimBase(baseUrl)}/api/v1/sessions/${encodeURIComponent(id)}/ws`);
  url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

// --- the client ---------------------------------------------------------------------

/** Close codes after which reconnecting cannot help. */
const FINAL_CLOSES = new Set([CloseCode.POLICY, CloseCode.TOO_LARGE]);

/**
 * One session over protocol v1, kept connected.
 *
 * Create it with `EaselClient.connect(baseUrl, options)`. Options:
 * - `pipeline`, `drain` (`"latest"` or `"all"`), `params`: for a new session (REST);
 * - `session: { id, token }`: attach to an existing session instead;
 * - `apiKey`: sent as `Authorization: Bearer` on REST calls;
 * - `reconnect` (default `true`): resume the session after a dropped connection,
 *   backing off from `minDelay` to `maxDelay` ms;
 * - `recreate` (default `true` when this client created the session): if the
 *   session is gone when resuming (expired, engine restarted), create a new one
 *   with the same pipeline, drain and params;
 * - `WebSocket`, `fetch`: implementations to use instead of the global ones.
 *
 * Events (`addEventListener`, or `on(type, fn)` which returns an unsubscribe):
 * - `open`: WELCOME arrived; `detail` `{ session, pipeline, drain, params, limits, resumed, created }`;
 * - `result`: a RESULT; `detail` `{ seq, ct, w, h, payload, timings, superseded, rtt }`;
 * - `error`: an ERROR frame; `detail` is an `EaselError` (with `seq` when it answers a frame);
 * - `event`: an EVENT; `detail` `{ name, data }`;
 * - `state`: the connection state changed; `detail` `{ state, attempt, code, reason }`;
 * - `close`: closed for good; `detail` `{ code, reason, error }`.
 */
export class EaselClient extends EventTarget {
  static async connect(baseUrl, options = {}) {
    const client = new EaselClient(baseUrl, options);
    await client.open();
    return client;
  }

  constructor(baseUrl, options = {}) {
    super();
    this.baseUrl = trimBase(baseUrl);
    this.options = {
      reconnect: true,
      minDelay: 250,
      maxDelay: 5000,
      ...options,
    };
    this._rest = { apiKey: options.apiKey, fetch: options.fetch };
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._wanted = {
      pipeline: options.pipeline,
      drain: options.drain,
      params: options.params ? { ...options.params } : undefined,
    };
    this._recreate = options.recreate ?? !options.session;
    this.session = options.session ? { ...options.session } : null;
    this.state = State.IDLE;
    this.welcome = null;
    this.limits = { max_frame: 8 * 1024 * 1024, max_header: 64 * 1024, max_inflight: 1 };
    this.seq = 0;
    this.attempt = 0;
    this.resumes = 0;
    this._ws = null;
    this._pending = new Map(); // seq -> time sent, for frames not answered yet
    this._calls = new Map(); // call id -> { resolve, reject, timer }
    this._nextCall = 1;
    this._waiters = []; // { resolve, reject } waiting for room to send
    this._connecting = false;
    this._retryTimer = null;
    this._closedForGood = false;
    this._sessionClosed = false;
  }

  /** The session id, once known. */
  get sessionId() {
    return this.session?.id ?? null;
  }

  /** The session's pipeline, drain and params as the last WELCOME said. */
  get pipeline() {
    return this.welcome?.pipeline ?? this._wanted.pipeline;
  }

  get drain() {
    return this.welcome?.drain ?? this._wanted.drain;
  }

  get params() {
    return this.welcome?.params ?? this._wanted.params ?? {};
  }

  /** Frames sent on this connection and not answered yet. */
  get inflight() {
    return this._pending.size;
  }

  /** Subscribe to an event; returns a function that unsubscribes. */
  on(type, listener) {
    const handler = (event) => listener(event.detail, event);
    this.addEventListener(type, handler);
    return () => this.removeEventListener(type, handler);
  }

  _emit(type, detail) {
    this.dispatchEvent(new EaselEvent(type, detail));
  }

  _setState(state, extra = {}) {
    if (this.state === state && !extra.force) return;
    this.state = state;
    this._emit("state", { state, attempt: this.attempt, ...extra });
  }

  /**
   * Create the session (unless given one) and attach; resolves on WELCOME.
   * Transient failures (engine unreachable, overloaded, session still attached
   * elsewhere) are retried when `reconnect` is on, so against an engine that is
   * down this waits until it is back; it rejects once the client closes for good
   * (bad pipeline or params, refused credentials, `close()`).
   */
  open() {
    if (this._closedForGood) return Promise.reject(new EaselError("closed", "this client is closed"));
    if (this.state === State.OPEN) return Promise.resolve({ ...this.welcome, resumed: false, created: false });
    return new Promise((resolve, reject) => {
      const offs = [
        this.on("open", (detail) => {
          offs.forEach((off) => off());
          resolve(detail);
        }),
        this.on("close", (detail) => {
          offs.forEach((off) => off());
          reject(detail.error ?? new EaselError("closed", detail.reason || "the client is closed"));
        }),
      ];
      if (!this._connecting && this._retryTimer === null) this._connect();
    });
  }

  async _connect() {
    this._connecting = true;
    this._setState(this.welcome || this.attempt ? State.RECONNECTING : State.CONNECTING);
    let created = false;
    if (!this.session) {
      try {
        const answer = await createSession(this.baseUrl, this._wanted, this._rest);
        this.session = { id: answer.id, token: answer.token };
        created = true;
      } catch (error) {
        this._connecting = false;
        if (this._closedForGood) return;
        const transient = error.status === undefined || error.status === 429 || error.status >= 500;
        if (transient && this.options.reconnect) {
          this._retry(CloseCode.ABNORMAL, error.message);
        } else {
          this._finish(CloseCode.POLICY, error.message, error);
        }
        return;
      }
      if (this._closedForGood) {
        this._connecting = false;
        deleteSession(this.baseUrl, this.session.id, this._rest).catch(() => {});
        return;
      }
    }
    this._attach(created);
  }

  _attach(created) {
    const url = sessionSocketUrl(this.baseUrl, this.session.id, this.session.token);
    let ws;
    try {
      ws = new this._WebSocket(url, [SUBPROTOCOL]);
    } catch (error) {
      this._connecting = false;
      this._finish(CloseCode.POLICY, error.message, new EaselError("unavailable", `cannot open a WebSocket: ${error.message}`));
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    let fatal = null; // the fatal ERROR that explains the close to come
    ws.onmessage = (message) => {
      if (ws !== this._ws) return;
      let frame;
      try {
        frame = decodeMessage(message.data);
      } catch (error) {
        this._emit("error", error);
        return;
      }
      if (frame.type === FrameType.WELCOME) {
        const resumed = this.welcome !== null && !created;
        this._connecting = false;
        this._welcome(frame.header);
        if (resumed) this.resumes += 1;
        this.attempt = 0;
        this._setState(State.OPEN, { force: true });
        this._emit("open", { ...this.welcome, resumed, created });
        this._wake();
        return;
      }
      if (frame.type === FrameType.ERROR && frame.header.fatal) {
        fatal = this._errorOf(frame.header);
      }
      this._dispatch(frame);
    };
    ws.onclose = (close) => {
      if (ws !== this._ws) return;
      this._ws = null;
      this._connecting = false;
      this._dropped(close.code ?? CloseCode.ABNORMAL, close.reason ?? "", fatal);
    };
    ws.onerror = () => {
      // The close event that follows says what happened.
    };
  }

  _welcome(header) {
    const limits = header.limits ?? {};
    this.welcome = {
      session: header.session,
      pipeline: header.pipeline,
      drain: header.drain,
      params: header.params ?? {},
      limits,
    };
    this.limits = { ...this.limits, ...limits };
    if (header.resume) this.session = { id: header.session ?? this.session.id, token: header.resume };
    this._wanted = { pipeline: header.pipeline, drain: header.drain, params: { ...(header.params ?? {}) } };
  }

  _errorOf(header) {
    const seq = Number.isInteger(header.seq) ? header.seq : undefined;
    return new EaselError(String(header.code ?? "internal"), String(header.message ?? ""), {
      seq,
      fatal: header.fatal === true,
    });
  }

  _dispatch(frame) {
    const h = frame.header;
    switch (frame.type) {
      case FrameType.RESULT: {
        const seq = h.seq;
        const sent = this._pending.get(seq);
        for (const pending of this._pending.keys()) {
          if (pending <= seq) this._pending.delete(pending); // answered or superseded
        }
        this._emit("result", {
          seq,
          ct: h.ct,
          w: h.w,
          h: h.h,
          payload: frame.payload,
          timings: h.t ?? null,
          superseded: h.superseded ?? 0,
          rtt: sent === undefined ? null : now() - sent,
        });
        this._wake();
        break;
      }
      case FrameType.ERROR: {
        const error = this._errorOf(h);
        if (error.seq !== undefined) this._pending.delete(error.seq);
        this._emit("error", error);
        this._wake();
        break;
      }
      case FrameType.REPLY: {
        const call = this._calls.get(h.id);
        if (!call) break;
        this._calls.delete(h.id);
        clearTimeout(call.timer);
        if (h.error) {
          call.reject(new EaselError(String(h.error.code ?? "internal"), String(h.error.message ?? "")));
        } else {
          call.resolve(h.result);
        }
        break;
      }
      case FrameType.EVENT: {
        if (h.event === "session.closed") this._sessionClosed = true;
        this._emit("event", { name: h.event, data: h.data ?? {} });
        break;
      }
      default:
        // Unknown or client-only types are ignored (forward compatibility).
        break;
    }
  }

  _dropped(code, reason, fatal) {
    this._pending.clear();
    for (const [, call] of this._calls) {
      clearTimeout(call.timer);
      call.reject(new EaselError("unavailable", "the connection closed before the reply", { closeCode: code }));
    }
    this._calls.clear();
    if (this._closedForGood) {
      this._finish(code, reason, null);
      return;
    }
    const gone = code === CloseCode.UNKNOWN_SESSION || fatal?.code === "not_found";
    if (this._sessionClosed || (code === CloseCode.NORMAL && fatal?.code === "session_closed")) {
      this._finish(code, reason, fatal ?? new EaselError("session_closed", reason || "the session was closed", { closeCode: code }));
      return;
    }
    if (gone && this._recreate) {
      this.session = null; // the next attempt creates a fresh session
    } else if (gone || FINAL_CLOSES.has(code) || !this.options.reconnect) {
      const error = fatal ?? new EaselError(gone ? "not_found" : "closed", reason || `connection closed (code ${code})`, { closeCode: code });
      this._finish(code, reason, error);
      return;
    }
    this._retry(code, reason);
  }

  _retry(code, reason) {
    this.attempt += 1;
    this._setState(State.RECONNECTING, { code, reason, force: true });
    const base = Math.min(this.options.maxDelay, this.options.minDelay * 2 ** Math.min(this.attempt - 1, 10));
    const delay = this.attempt === 1 ? 0 : base / 2 + Math.random() * (base / 2);
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (!this._closedForGood) this._connect();
    }, delay);
  }

  _finish(code, reason, error) {
    this._closedForGood = true;
    if (this.state === State.CLOSED) return;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    for (const waiter of this._waiters) waiter.reject(error ?? new EaselError("closed", "the client is closed"));
    this._waiters = [];
    this._setState(State.CLOSED, { code, reason, force: true });
    this._emit("close", { code, reason, error });
  }

  /** Room to send one more frame: open, and under `all` below `limits.max_inflight`. */
  hasRoom() {
    if (this.state !== State.OPEN || !this._ws) return false;
    if (this.drain === "all") return this._pending.size < (this.limits.max_inflight ?? 1);
    return true;
  }

  /**
   * Resolves when a frame may be sent: the connection is open and, under `all`,
   * fewer than `limits.max_inflight` frames wait for their answers. This is the
   * back-pressure of the `all` drain: send only after awaiting it. Rejects when
   * the client closes for good.
   */
  ready() {
    if (this._closedForGood) return Promise.reject(new EaselError("closed", "the client is closed"));
    if (this.hasRoom()) return Promise.resolve();
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  _wake() {
    if (!this.hasRoom()) return;
    // Under `all` one waiter per free place (each is about to send); else all of them.
    let free = this.drain === "all" ? (this.limits.max_inflight ?? 1) - this._pending.size : Infinity;
    while (this._waiters.length && free > 0) {
      this._waiters.shift().resolve();
      free -= 1;
    }
  }

  _send(bytes) {
    if (this.state !== State.OPEN || !this._ws) {
      throw new EaselError("unavailable", "not connected");
    }
    this._ws.send(bytes);
  }

  /**
   * Send one image; returns its `seq`. `ct` is `image/jpeg`, `image/png`,
   * `image/webp`, `raw/rgb8` or `raw/rgba8` (raw types need `w` and `h`);
   * `params` override the session's for this frame only. Waits for `ready()`
   * first, so under `all` it pushes back while the server is busy.
   */
  async sendFrame(payload, { ct = "image/jpeg", w, h, params } = {}) {
    do {
      await this.ready();
    } while (!this.hasRoom()); // another sender may have taken the place meanwhile
    return this.sendFrameNow(payload, { ct, w, h, params });
  }

  /** `sendFrame` without waiting for room: throws when not connected. */
  sendFrameNow(payload, { ct = "image/jpeg", w, h, params } = {}) {
    const seq = this.seq++;
    const header = { seq, ct, ts: now() };
    if (w !== undefined) header.w = w;
    if (h !== undefined) header.h = h;
    if (params !== undefined) header.params = params;
    this._send(encodeMessage(FrameType.FRAME, header, payload));
    this._pending.set(seq, header.ts);
    return seq;
  }

  /** PARAMS: merge `params` into the session's, without waiting for an answer. */
  sendParams(params) {
    this._send(encodeMessage(FrameType.PARAMS, { params }));
  }

  /**
   * CALL `method` with `args`; resolves with the REPLY's `result`, rejects with an
   * `EaselError` for a REPLY error, a dropped connection or after `timeout` ms.
   */
  call(method, args = {}, { timeout = 10000 } = {}) {
    return new Promise((resolve, reject) => {
      const id = this._nextCall++;
      try {
        this._send(encodeMessage(FrameType.CALL, { id, method, args }));
      } catch (error) {
        reject(error);
        return;
      }
      const timer = setTimeout(() => {
        if (this._calls.delete(id)) reject(new EaselError("timeout", `${method} got no reply in ${timeout} ms`));
      }, timeout);
      this._calls.set(id, { resolve, reject, timer });
    });
  }

  /** Merge `patch` into the session's params (CALL session.params); resolves with all of them. */
  async setParams(patch) {
    const params = await this.call("session.params", { set: patch });
    if (this.welcome) this.welcome.params = params;
    this._wanted.params = { ...params };
    return params;
  }

  /** The session's counters as the server keeps them (CALL session.stats). */
  stats() {
    return this.call("session.stats");
  }

  /** The pipeline's name, kind, replicas, readiness and params schema (CALL pipeline.info). */
  pipelineInfo() {
    return this.call("pipeline.info");
  }

  /** Drop the current connection and resume the session on a new one. */
  reconnect() {
    if (this._ws) this._ws.close(4000, "reconnect");
  }

  /**
   * Close for good. With `{ discard: true }` the session is deleted on the server
   * too; otherwise it waits there (its idle timeout) for someone to resume it.
   */
  async close({ discard = false } = {}) {
    const already = this._closedForGood;
    this._closedForGood = true;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const ws = this._ws;
    if (ws) {
      ws.close(CloseCode.NORMAL, "client closed");
    } else if (!already) {
      this._finish(CloseCode.NORMAL, "client closed", null);
    }
    if (discard && this.session) {
      try {
        await deleteSession(this.baseUrl, this.session.id, this._rest);
      } catch (error) {
        if (error.code !== "not_found") throw error;
      }
    }
  }
}
