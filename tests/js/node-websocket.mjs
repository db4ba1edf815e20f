// A minimal WebSocket client (RFC 6455) on node:http, for node versions without a
// global WebSocket (18, the one Debian 12 packages). Just what EaselClient uses:
// binary and text messages, ping/pong, the closing handshake, onmessage/onclose.
import { createHash, randomBytes } from "node:crypto";
import { request } from "node:http";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export class NodeWebSocket {
  constructor(url, protocols = []) {
    const target = new URL(url);
    if (target.protocol !== "ws:") throw new SyntaxError(`only ws: URLs here, not ${target.protocol}`);
    this.url = url;
    this.readyState = 0;
    this.protocol = "";
    this.binaryType = "arraybuffer";
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this._buffer = Buffer.alloc(0);
    this._fragments = [];
    this._opcode = 0;
    this._closeInfo = null;
    this._socket = null;
    const key = randomBytes(16).toString("base64");
    const req = request({
      host: target.hostname,
      port: target.port || 80,
      path: target.pathname + target.search,
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": [].concat(protocols).join(", "),
      },
    });
    req.on("upgrade", (response, socket, head) => {
      const accept = createHash("sha1").update(key + GUID).digest("base64");
      this._socket = socket;
      socket.on("data", (chunk) => this._feed(chunk));
      socket.on("close", () => this._closed());
      socket.on("error", () => {});
      if (response.headers["sec-websocket-accept"] !== accept) {
        socket.destroy();
        return;
      }
      this.protocol = response.headers["sec-websocket-protocol"] ?? "";
      this.readyState = 1;
      this.onopen?.({});
      if (head.length) this._feed(head);
    });
    req.on("response", (response) => {
      response.resume();
      this._fail();
    });
    req.on("error", () => this._fail());
    req.end();
  }

  send(data) {
    if (this.readyState !== 1) throw new Error("the WebSocket is not open");
    const bytes = typeof data === "string" ? Buffer.from(data) : Buffer.from(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength);
    this._write(typeof data === "string" ? 0x1 : 0x2, bytes);
  }

  close(code = 1000, reason = "") {
    if (this.readyState >= 2) return;
    if (this.readyState === 0) {
      this._fail();
      return;
    }
    this.readyState = 2;
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
    payload.writeUInt16BE(code, 0);
    payload.write(reason, 2);
    this._write(0x8, payload);
    setTimeout(() => this._socket?.destroy(), 2000).unref();
  }

  _write(opcode, payload) {
    const mask = randomBytes(4);
    let header;
    if (payload.length < 126) {
      header = Buffer.from([0x80 | opcode, 0x80 | payload.length]);
    } else if (payload.length < 65536) {
      header = Buffer.alloc(4);
      header.writeUInt16BE(payload.length, 2);
      header[1] = 0x80 | 126;
    } else {
      header = Buffer.alloc(10);
      header.writeBigUInt64BE(BigInt(payload.length), 2);
      header[1] = 0x80 | 127;
    }
    header[0] = 0x80 | opcode;
    const masked = Buffer.alloc(payload.length);
    for (let i = 0; i < payload.length; i += 1) masked[i] = payload[i] ^ mask[i & 3];
    this._socket.write(Buffer.concat([header, mask, masked]));
  }

  _feed(chunk) {
    this._buffer = Buffer.concat([this._buffer, chunk]);
    for (;;) {
      const buf = this._buffer;
      if (buf.length < 2) return;
      const fin = (buf[0] & 0x80) !== 0;
      const opcode = buf[0] & 0x0f;
      let length = buf[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buf.length < 4) return;
        length = buf.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buf.length < 10) return;
        length = Number(buf.readBigUInt64BE(2));
        offset = 10;
      }
      if (buf.length < offset + length) return; // servers do not mask
      const payload = buf.subarray(offset, offset + length);
      this._buffer = buf.subarray(offset + length);
      this._frame(fin, opcode, payload);
    }
  }

  _frame(fin, opcode, payload) {
    if (opcode === 0x8) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      this._closeInfo = { code, reason: payload.subarray(2).toString() };
      if (this.readyState === 1) {
        this.readyState = 2;
        this._write(0x8, payload.subarray(0, 2));
      }
      this._socket.end();
      return;
    }
    if (opcode === 0x9) {
      if (this.readyState === 1) this._write(0xa, Buffer.from(payload));
      return;
    }
    if (opcode === 0xa) return;
    if (opcode !== 0x0) this._opcode = opcode;
    this._fragments.push(Buffer.from(payload));
    if (!fin) return;
    const message = Buffer.concat(this._fragments);
    this._fragments = [];
    const data = this._opcode === 0x1 ? message.toString() : message.buffer.slice(message.byteOffset, message.byteOffset + message.length);
    if (this.readyState === 1) this.onmessage?.({ data });
  }

  _fail() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code: 1006, reason: "" });
  }

  _closed() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.(this._closeInfo ?? { code: 1006, reason: "" });
  }
}
