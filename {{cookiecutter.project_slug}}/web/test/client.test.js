// The JS client against a real server (started by tests/test_web_client.py, which
// sets SGS_WS_URL and SGS_CATALOG), in whatever protocol that server speaks.
//
//   SGS_WS_URL=ws://127.0.0.1:6667/ SGS_CATALOG=web/catalog.js node --test web/test/

import assert from "node:assert/strict";
import { test } from "node:test";
import { pathToFileURL } from "node:url";
import WebSocket from "ws";

import { Client, RemoteError, RequestError, decodeFrames, encodeFrame } from "../sgs-client.js";

const url = process.env.SGS_WS_URL;
const catalog = await import(pathToFileURL(process.env.SGS_CATALOG ?? "catalog.js").href);
const { EchoReq, EchoResp, LoginReq, BusinessReq, JoinRoomReq, SayReq, RoomMessage, PingReq, LogoutReq } =
  catalog;

async function connected(options = {}) {
  const client = new Client(url, { catalog, WebSocket, timeout: 5000, reconnect: false, ...options });
  await client.connect();
  return client;
}

function next(client, Type) {
  return new Promise((resolve) => {
    const off = client.on(Type, (msg) => {
      off();
      resolve(msg);
    });
  });
}

test("frames: several per message, a partial one refused", () => {
  const a = encodeFrame(9, new Uint8Array([1, 2, 3]));
  const b = encodeFrame(10, new Uint8Array([]));
  const both = new Uint8Array([...a, ...b]);
  assert.deepEqual(
    decodeFrames(both).map(([id, v]) => [id, [...v]]),
    [[9, [1, 2, 3]], [10, []]],
  );
  assert.throws(() => decodeFrames(both.subarray(0, both.length - 9)), /partial/);
});

test("the catalogue is generated from messages.py", () => {
  assert.equal(EchoReq.id, 9);
  assert.equal(EchoReq.reply, "EchoResp");
  assert.deepEqual(EchoReq.fields, ["text"]);
  assert.equal(catalog.MESSAGES.get(10), EchoResp);
  assert.equal(new PingReq().client_time_ms, 0);
});

test(`echo, in request order (${catalog.PROTOCOL})`, async () => {
  const client = await connected();
  const replies = await Promise.all(
    Array.from({ length: 40 }, (_, i) => client.request(new EchoReq({ text: `n${i} é ✓` }))),
  );
  assert.deepEqual(
    replies.map((r) => r.text),
    Array.from({ length: 40 }, (_, i) => `n${i} é ✓`),
  );
  assert.ok(replies[0] instanceof EchoResp);
  client.close();
});

test("login, business, ping", async () => {
  const client = await connected();
  const resp = await client.request(new LoginReq({ account_id: `js-${catalog.PROTOCOL}` }));
  assert.equal(resp.user.account_id, `js-${catalog.PROTOCOL}`);
  const sum = await client.request(new BusinessReq({ key: 7, value1: 40, value2: 2 }));
  assert.equal(sum.key, 7);
  assert.equal(sum.result, 42);
  const now = Date.now();
  const pong = await client.request(new PingReq({ client_time_ms: now }));
  assert.equal(pong.client_time_ms, now);
  assert.ok(Math.abs(pong.server_time_ms - now) < 60000);
  client.close();
});

test("an Error reply rejects the request it answers, others go on", async () => {
  const client = await connected();
  const refused = client.request(new JoinRoomReq({ room: "lobby" })); // not logged in
  const echoed = client.request(new EchoReq({ text: "after" }));
  await assert.rejects(refused, (err) => err instanceof RemoteError && err.code === "not_logged_in");
  assert.equal((await echoed).text, "after");
  await assert.rejects(client.request(new SayReq({ text: "x" })), /declares no reply/);
  client.close();
});

test("pushes: two clients in one room hear each other", async () => {
  const room = `js-room-${catalog.PROTOCOL}`;
  const ann = await connected();
  const bob = await connected();
  await ann.request(new LoginReq({ account_id: "ann" }));
  await bob.request(new LoginReq({ account_id: "bob" }));
  await ann.request(new JoinRoomReq({ room }));
  const joined = await bob.request(new JoinRoomReq({ room }));
  assert.deepEqual(joined.members, ["ann", "bob"]);
  const heard = next(bob, RoomMessage);
  const echo = next(ann, RoomMessage);
  assert.ok(ann.send(new SayReq({ text: "hi bob" })));
  for (const msg of [await heard, await echo]) {
    assert.ok(msg instanceof RoomMessage);
    assert.deepEqual({ ...msg }, { room, sender: "ann", text: "hi bob" });
  }
  ann.close();
  bob.close();
});

test("a timed-out request keeps its place: its late reply settles nothing else", async () => {
  const client = await connected();
  const late = client.request(new EchoReq({ text: "late" }), { timeout: 1 });
  const until = Date.now() + 30; // the reply arrives meanwhile; timers run before I/O
  while (Date.now() < until) {}
  await assert.rejects(late, (err) => err instanceof RequestError && err.code === "timeout");
  const next = await client.request(new EchoReq({ text: "next" }));
  assert.equal(next.text, "next");
  client.close();
});

test("pending requests are rejected when the socket closes; reconnect with backoff", async () => {
  const client = await connected({ reconnect: true, minDelay: 20, maxDelay: 200 });
  const events = [];
  client.on("close", (e) => events.push(`close ${e.code}`));
  client.on("reconnecting", (r) => events.push(`reconnecting ${r.attempt}`));
  const reopened = new Promise((resolve) => client.on("open", resolve));
  await client.request(new LoginReq({ account_id: "leaver" }));
  const bye = client.request(new LogoutReq()); // answered, then the server closes the link
  const orphan = client.request(new PingReq({ client_time_ms: 1 }));
  await bye;
  await assert.rejects(orphan, (err) => err instanceof RequestError && err.code === "closed");
  await reopened;
  assert.deepEqual(events.slice(0, 2), ["close 1000", "reconnecting 1"]);
  assert.equal((await client.request(new EchoReq({ text: "back" }))).text, "back");
  client.close();
});

test("a dropped socket resumes: the room lines said meanwhile arrive once, in order", async () => {
  const alice = await connected({ reconnect: true, minDelay: 20, maxDelay: 200, maxRetries: 20 });
  const bob = await connected();
  await alice.request(new LoginReq({ account_id: "resumer" }));
  await alice.request(new JoinRoomReq({ room: "resume-room" }));
  const armed = await alice.armResume();
  assert.ok(armed.recovered && armed.token);
  await bob.request(new LoginReq({ account_id: "resume-bob" }));
  await bob.request(new JoinRoomReq({ room: "resume-room" }));
  const heard = [];
  alice.on(RoomMessage, (msg) => heard.push(msg.text));
  const resumed = new Promise((resolve) => alice.on("resumed", resolve));
  alice.ws.terminate(); // no close frame, no logout: the server holds the player
  for (let i = 0; i < 5; i++) bob.send(new SayReq({ text: `line ${i}` }));
  assert.equal((await resumed).recovered, true);
  const deadline = Date.now() + 5000;
  while (heard.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(heard, [0, 1, 2, 3, 4].map((i) => `line ${i}`));
  assert.equal((await alice.request(new EchoReq({ text: "still me" }))).text, "still me");
  alice.close();
  bob.close();
});

test("matches: join or create, list, join by id, play, leave", async () => {
  const a = await connected();
  const b = await connected();
  const states = [];
  b.on(catalog.ArenaState, (s) => states.push(s));
  await a.request(new LoginReq({ account_id: "js-arena-a" }));
  await b.request(new LoginReq({ account_id: "js-arena-b" }));
  const made = await a.createRoom("arena", { options: { mode: "js" } });
  assert.equal(made.room_type, "arena");
  assert.equal(made.metadata, '{"mode":"js"}');
  const rows = await b.listRooms("arena", { filters: { mode: "js" } });
  assert.deepEqual(rows.map((r) => [r.room_id, r.clients]), [[made.room_id, 1]]);
  const joined = await b.joinOrCreate("arena", { filters: { mode: "js" } });
  assert.equal(joined.room_id, made.room_id);
  assert.equal(joined.clients, 2);
  b.send(new catalog.MoveReq({ direction: "left", seq: 1 }));
  while (!states.some((s) => s.players.some((p) => p.name === "js-arena-b" && p.seq === 1))) {
    await new Promise((r) => setTimeout(r, 20));
  }
  await assert.rejects(b.joinById("no-such-room"), (err) => err instanceof RemoteError && err.code === "no_such_room");
  assert.equal((await a.leaveRoom()).room_id, made.room_id);
  a.close();
  b.close();
});
