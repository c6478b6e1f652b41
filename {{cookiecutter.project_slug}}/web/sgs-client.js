// The game client for browsers (and node >= 20): WebSocket + TLV frames.
//
//   import * as catalog from "./catalog.js";        // generated from messages.py
//   import { Client } from "./sgs-client.js";
//   const client = new Client("ws://localhost:6667/", { catalog });
//   await client.connect();
//   const resp = await client.request(new catalog.LoginReq({ account_id: "ann" }));
//   client.on(catalog.RoomMessage, (msg) => console.log(msg.sender, msg.text));
//
// Wire: every binary WebSocket message carries one or more whole TLV frames
// (msg_id u32 BE | length u32 BE | value), the value encoded by the server's
// protocol (json, msgpack, bson or protobuf). This client sends one frame per
// message and accepts any number of frames in a message it receives.
//
// Matching replies: TLV frames carry no request id. The server answers the
// requests of one connection in the order they arrived, so a reply settles the
// oldest pending request waiting for that reply type (first in, first out),
// and an Error settles the oldest pending request with the Error's msg_id.
// A request that timed out keeps its place in the queue until its late reply
// arrives and is dropped, so it never settles a later request by mistake.
// Everything that answers no pending request is a push, handed to `on`.
//
// Session resumption (server setting resume_window > 0): after a login,
// `armResume()` asks for a resume token. The client counts every frame it
// receives (the server's per-link outbound sequence; a ResumeResp sets the
// count instead). When the socket drops, the reconnect (exponential backoff,
// full jitter, at most `maxRetries` attempts) sends ResumeReq(token, last_seq);
// the frames the server replays arrive as pushes, in order, before anything
// new, and the "resumed" event says { recovered }: true (nothing lost), false
// (the game sent a snapshot), or null with `code` (no session: log in again).

import { makeCodec } from "./codecs.js";

const HEADER = 8;
const ERROR_ID = 99;

/** The server answered a request with `Error` (`.error` holds it: code, message, msg_id). */
export class RemoteError extends Error {
  constructor(error) {
    super(`${error.code}: ${error.message}`);
    this.name = "RemoteError";
    this.code = error.code;
    this.error = error;
  }
}

/** A request got no reply in time, or the connection closed before it did. */
export class RequestError extends Error {
  constructor(message, code) {
    super(message);
    this.name = "RequestError";
    this.code = code;
  }
}

/** One TLV frame as bytes. */
export function encodeFrame(msgId, value) {
  const frame = new Uint8Array(HEADER + value.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, msgId);
  view.setUint32(4, value.length);
  frame.set(value, HEADER);
  return frame;
}

/** Every whole frame of one message: [[msgId, valueBytes], ...]; throws on a partial frame. */
export function decodeFrames(bytes) {
  const frames = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 0;
  while (off < bytes.length) {
    if (bytes.length - off < HEADER) throw new Error("partial TLV header in a message");
    const msgId = view.getUint32(off);
    const length = view.getUint32(off + 4);
    const end = off + HEADER + length;
    if (end > bytes.length) throw new Error("partial TLV frame in a message");
    frames.push([msgId, bytes.subarray(off + HEADER, end)]);
    off = end;
  }
  return frames;
}

/** An options/filters object as the JSON object text the wire carries ("" for none). */
function json(value) {
  return value && Object.keys(value).length ? JSON.stringify(value) : "";
}

export class Client {
  /**
   * @param {string} url  ws://host:port/path of the server's WebSocket port
   * @param {object} options
   *   catalog     the generated catalog module (required)
   *   protocol    codec name (default: catalog.PROTOCOL, the server's)
   *   timeout     ms a request waits for its reply (default 10000)
   *   reconnect   reconnect after an unexpected close (default true)
   *   minDelay, maxDelay  backoff bounds in ms (default 250, 10000); full jitter
   *   maxRetries  reconnect attempts in a row before giving up ("gave_up" event; default 10)
   *   WebSocket   the WebSocket class (default: globalThis.WebSocket)
   */
  constructor(url, options = {}) {
    if (!options.catalog) throw new Error("Client needs { catalog } (import * as catalog from './catalog.js')");
    this.url = url;
    this.catalog = options.catalog;
    this.protocol = options.protocol ?? options.catalog.PROTOCOL ?? "json";
    this.timeout = options.timeout ?? 10000;
    this.reconnect = options.reconnect ?? true;
    this.minDelay = options.minDelay ?? 250;
    this.maxDelay = options.maxDelay ?? 10000;
    this.maxRetries = options.maxRetries ?? 10;
    this.seq = 0; // frames received since the server last set the count (ResumeResp)
    this.resumeToken = "";
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.byId = options.catalog.MESSAGES;
    this.byName = new Map([...this.byId.values()].map((T) => [T.name, T]));
    this.codec = null;
    this.ws = null;
    this.attempt = 0;
    this.closedByUs = false;
    this.pending = new Map(); // reply id -> FIFO of entries
    this.handlers = new Map(); // msg id or event name -> Set of callbacks
    this.retryTimer = null;
    this._opened = null;
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === 1;
  }

  /** Open the socket; resolves once it is open (rejects if the first attempt fails). */
  async connect() {
    this.closedByUs = false;
    if (!this.codec) this.codec = await makeCodec(this.protocol, this.catalog);
    return this._open();
  }

  _open() {
    const ws = new this.WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    return new Promise((resolve, reject) => {
      let opened = false;
      ws.onopen = () => {
        opened = true;
        const reconnected = this.attempt > 0;
        this.attempt = 0;
        this._emit("open");
        if (reconnected && this.resumeToken) this._resume();
        resolve(this);
      };
      ws.onmessage = (event) => this._received(event.data);
      ws.onclose = (event) => {
        if (this.ws === ws) this.ws = null;
        this._failPending(new RequestError(`connection closed (${event.code})`, "closed"));
        this._emit("close", { code: event.code, reason: event.reason });
        if (!opened) reject(new RequestError(`cannot connect to ${this.url} (${event.code})`, "connect"));
        if (!this.closedByUs && this.reconnect) this._scheduleReconnect();
      };
      ws.onerror = () => {}; // a close event follows with the details
    });
  }

  _scheduleReconnect() {
    if (this.attempt >= this.maxRetries) {
      this._emit("gave_up", { attempts: this.attempt });
      return;
    }
    // Exponential backoff with full jitter: many clients of a restarted server spread out.
    const ceiling = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.attempt += 1;
    this._emit("reconnecting", { attempt: this.attempt, delay });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.closedByUs) return;
      this._open().catch(() => {}); // its close handler schedules the next attempt
    }, delay);
  }

  /** After a login: ask for a resume token, so a dropped socket resumes the session. */
  armResume() {
    const ResumeReq = this.byName.get("ResumeReq");
    return this.request(new ResumeReq({ token: "", last_seq: 0 }));
  }

  /** A logout: the next close ends the session; nothing to resume. */
  forgetResume() {
    this.resumeToken = "";
  }

  async _resume() {
    const ResumeReq = this.byName.get("ResumeReq");
    try {
      const resp = await this.request(new ResumeReq({ token: this.resumeToken, last_seq: this.seq }));
      this._emit("resumed", { recovered: resp.recovered, replayed: resp.replayed });
    } catch (err) {
      if (err instanceof RemoteError) this.resumeToken = ""; // resume_expired, a refused token
      this._emit("resumed", { recovered: null, code: err.code ?? err.error?.code });
    }
  }

  /** Close for good (no reconnect); pending requests are rejected. */
  close(code = 1000) {
    this.closedByUs = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.ws !== null) this.ws.close(code);
  }

  /** Send a message that expects no reply (fire and forget). False when not connected. */
  send(msg) {
    if (!this.isOpen) return false;
    const Type = msg.constructor;
    this.ws.send(encodeFrame(Type.id, this.codec.encode(msg)));
    return true;
  }

  /** Send `msg` and resolve with its reply; reject with RemoteError, or RequestError on timeout/close. */
  request(msg, { timeout } = {}) {
    const Type = msg.constructor;
    const Reply = Type.reply ? this.byName.get(Type.reply) : undefined;
    if (!Reply) return Promise.reject(new Error(`${Type.name} declares no reply: use send()`));
    if (!this.isOpen) return Promise.reject(new RequestError("not connected", "closed"));
    return new Promise((resolve, reject) => {
      const entry = { requestId: Type.id, replyId: Reply.id, resolve, reject, timer: null, dead: false };
      const ms = timeout ?? this.timeout;
      entry.timer = setTimeout(() => {
        entry.dead = true; // keeps its place: its late reply is dropped, not given to the next
        reject(new RequestError(`no ${Reply.name} within ${ms} ms`, "timeout"));
      }, ms);
      let queue = this.pending.get(Reply.id);
      if (!queue) this.pending.set(Reply.id, (queue = []));
      queue.push(entry);
      this.ws.send(encodeFrame(Type.id, this.codec.encode(msg)));
    });
  }

  // -- matches (the framework's rooms, ids 18-26): options and filters are objects here,
  // JSON object text on the wire. Each resolves with the reply or rejects with
  // RemoteError (code room_full, room_locked, no_such_room, join_refused, seat_expired).

  /** A seat in a fitting room of `roomType` (metadata matching `filters`), or a new room: RoomJoined. */
  joinOrCreate(roomType, { options = {}, filters = {} } = {}) {
    return this._room("JoinOrCreate", { room_type: roomType, options: json(options), filters: json(filters) });
  }

  /** A new room of `roomType`: RoomJoined. */
  createRoom(roomType, { options = {} } = {}) {
    return this._room("CreateRoom", { room_type: roomType, options: json(options) });
  }

  /** Join the room `roomId` (listed or private): RoomJoined. */
  joinById(roomId, { options = {} } = {}) {
    return this._room("JoinById", { room_id: roomId, options: json(options) });
  }

  /** Leave the current match: RoomLeft. */
  leaveRoom() {
    return this._room("LeaveRoom", {});
  }

  /** The listed rooms (of `roomType`, matching `filters`): an array of RoomInfo. */
  async listRooms(roomType = "", { filters = {} } = {}) {
    return (await this._room("ListRooms", { room_type: roomType, filters: json(filters) })).rooms;
  }

  _room(name, fields) {
    const Type = this.byName.get(name);
    if (!Type) return Promise.reject(new Error(`the catalog has no ${name}: this server offers no rooms`));
    return this.request(new Type(fields));
  }

  /** `fn(msg)` for every push of `Type` (a catalog class), or for "open", "close", "reconnecting". Returns an unsubscribe function. */
  on(Type, fn) {
    const key = typeof Type === "string" ? Type : Type.id;
    let set = this.handlers.get(key);
    if (!set) this.handlers.set(key, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  _emit(key, value) {
    const set = this.handlers.get(key);
    if (!set) return;
    for (const fn of set) {
      try {
        fn(value);
      } catch (err) {
        console.error("sgs client handler failed", err);
      }
    }
  }

  _received(data) {
    let frames;
    try {
      frames = decodeFrames(new Uint8Array(data));
    } catch (err) {
      console.error(err.message);
      this.ws?.close(1007);
      return;
    }
    for (const [msgId, value] of frames) {
      const Type = this.byId.get(msgId);
      if (!Type) {
        console.warn(`unknown message id ${msgId} from the server`);
        continue;
      }
      let msg;
      try {
        msg = this.codec.decode(Type, value);
      } catch (err) {
        console.warn(`cannot decode ${Type.name}: ${err.message}`);
        continue;
      }
      if (Type.name === "ResumeResp") {
        this.seq = Number(msg.seq);
        if (msg.token) this.resumeToken = msg.token;
      } else {
        this.seq += 1;
      }
      if (msgId === ERROR_ID) this._error(msg);
      else if (!this._settle(msgId, (entry) => entry.resolve(msg))) this._emit(msgId, msg);
    }
  }

  _settle(replyId, fn, match = () => true) {
    const queue = this.pending.get(replyId);
    if (!queue) return false;
    const index = queue.findIndex(match);
    if (index < 0) return false;
    const [entry] = queue.splice(index, 1);
    if (!queue.length) this.pending.delete(replyId);
    clearTimeout(entry.timer);
    if (!entry.dead) fn(entry);
    return true;
  }

  _error(error) {
    if (error.msg_id) {
      for (const [replyId, queue] of this.pending) {
        if (queue.some((e) => e.requestId === error.msg_id)) {
          this._settle(replyId, (e) => e.reject(new RemoteError(error)), (e) => e.requestId === error.msg_id);
          return;
        }
      }
    }
    if (error.code === "replaced") {
      this.reconnect = false; // another login (or a resume elsewhere) took over: stay out
      this.resumeToken = "";
    }
    this._emit(ERROR_ID, error); // a notice (msg_id 0), or an answer to a plain send()
  }

  _failPending(err) {
    const queues = [...this.pending.values()];
    this.pending.clear();
    for (const queue of queues) {
      for (const entry of queue) {
        clearTimeout(entry.timer);
        if (!entry.dead) entry.reject(err);
      }
    }
  }
}
