// The demo page: log in, join a room, chat, watch RoomTick and the ping round trip,
// and play the arena (a match on the server's rooms) drawn live on a canvas.
// Served with its catalogue by the server's WebSocket port (plain GET /), so
// the page talks to the port it came from, in the server's own protocol.

import * as catalog from "./catalog.js";
import { Client, RemoteError } from "./sgs-client.js";

const $ = (id) => document.getElementById(id);
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const client = new Client(`${scheme}//${location.host}${catalog.WS_PATH}`, { catalog, timeout: 5000 });
let account = "";
let room = "";

function show(text, kind = "") {
  const li = document.createElement("li");
  li.textContent = text;
  if (kind) li.className = kind;
  $("messages").append(li);
  li.scrollIntoView({ block: "nearest" });
}

function failed(what, err) {
  show(`${what} failed: ${err instanceof RemoteError ? err.code + " - " + err.error.message : err.message}`, "notice");
}

async function ping() {
  if (!client.isOpen) return;
  const sent = performance.now();
  try {
    await client.request(new catalog.PingReq({ client_time_ms: Date.now() }));
    $("rtt").textContent = `${(performance.now() - sent).toFixed(1)} ms`;
  } catch {
    $("rtt").textContent = "-";
  }
}

async function login() {
  const wanted = $("account").value.trim();
  if (!wanted) return;
  try {
    const resp = await client.request(new catalog.LoginReq({ account_id: wanted }));
    account = resp.user.account_id;
    $("user").textContent = `logged in as ${account} (counter ${resp.user.counter})`;
    $("join").disabled = false;
    $("arena-join").disabled = false;
    document.body.dataset.loggedIn = "1";
    if (room) await join(); // after a reconnect: back into the room
  } catch (err) {
    failed("login", err);
  }
}

async function join() {
  try {
    const resp = await client.request(new catalog.JoinRoomReq({ room: $("room").value.trim() }));
    room = resp.room;
    $("members").textContent = `in ${room}: ${resp.members.join(", ")}`;
    $("text").disabled = $("say").disabled = false;
    document.body.dataset.room = room;
  } catch (err) {
    failed("join", err);
  }
}

client.on(catalog.RoomMessage, (msg) => {
  show(`${msg.sender}: ${msg.text}`, msg.sender === account ? "self" : "");
});
client.on(catalog.RoomTick, (tick) => {
  $("tick").textContent = `${tick.room} #${tick.tick} (${tick.members} here)`;
});
client.on(catalog.Error, (err) => show(`server: ${err.code} - ${err.message}`, "notice"));
client.on("open", () => {
  $("status").textContent = "connected";
  document.body.dataset.connected = "1";
  if (account) login();
});
client.on("close", (e) => {
  $("status").textContent = `closed (${e.code})`;
  arena = null; // a match does not outlive the connection: press play again
  delete document.body.dataset.arena;
  delete document.body.dataset.connected;
});
client.on("reconnecting", (r) => {
  $("status").textContent = `reconnecting in ${r.delay} ms`;
});

// -- the arena: JoinOrCreate("arena"), MoveReq on keys, ArenaState drawn each tick --------

const FIELD = 32; // cells a side, as the server's arena
const KEYS = { ArrowUp: "up", ArrowDown: "down", ArrowLeft: "left", ArrowRight: "right", w: "up", s: "down", a: "left", d: "right" };
let arena = null;
let moves = 0;

async function playArena() {
  try {
    const joined = await client.joinOrCreate("arena");
    arena = joined.room_id;
    $("arena-info").textContent = `arena ${arena} (${joined.clients}/${joined.max_clients}): arrow keys or WASD`;
    document.body.dataset.arena = arena;
    $("arena").focus();
  } catch (err) {
    failed("arena", err);
  }
}

function colour(name) {
  let h = 2166136261;
  for (const c of name) h = Math.imul(h ^ c.codePointAt(0), 16777619) >>> 0;
  return `hsl(${h % 360} 65% 45%)`;
}

function draw(state) {
  const canvas = $("arena");
  const ctx = canvas.getContext("2d");
  const cell = canvas.width / FIELD;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#eee";
  for (let i = 1; i < FIELD; i++) {
    ctx.beginPath();
    ctx.moveTo(i * cell, 0);
    ctx.lineTo(i * cell, canvas.height);
    ctx.moveTo(0, i * cell);
    ctx.lineTo(canvas.width, i * cell);
    ctx.stroke();
  }
  ctx.font = "11px system-ui, sans-serif";
  for (const p of state.players) {
    ctx.fillStyle = colour(p.name);
    ctx.fillRect(p.x * cell + 1, p.y * cell + 1, cell - 2, cell - 2);
    if (p.name === account) {
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 2;
      ctx.strokeRect(p.x * cell, p.y * cell, cell, cell);
      ctx.lineWidth = 1;
    }
    ctx.fillText(p.name, Math.min(p.x * cell, canvas.width - 60), p.y * cell > 12 ? p.y * cell - 2 : p.y * cell + cell + 10);
  }
  ctx.fillStyle = "#555";
  ctx.fillText(`tick ${state.tick} - ${state.players.length} players`, 4, canvas.height - 4);
}

client.on(catalog.ArenaState, (state) => {
  if (state.room_id !== arena) return;
  draw(state);
  document.body.dataset.arenaTick = String(state.tick);
  document.body.dataset.arenaPlayers = String(state.players.length);
});
client.on(catalog.RoomClosed, (msg) => {
  show(`room ${msg.room_id} closed: ${msg.reason}`, "notice");
  if (msg.room_id === arena) {
    arena = null;
    delete document.body.dataset.arena;
  }
});
document.addEventListener("keydown", (event) => {
  const direction = KEYS[event.key];
  if (!arena || !direction || event.target.tagName === "INPUT") return;
  event.preventDefault();
  client.send(new catalog.MoveReq({ direction, seq: ++moves }));
});
$("arena-join").onclick = playArena;

$("protocol").textContent = catalog.PROTOCOL;
$("account").value = `player-${Math.floor(Math.random() * 1000)}`;
$("login").onclick = login;
$("join").onclick = join;
$("chat").onsubmit = (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (text && client.send(new catalog.SayReq({ text }))) $("text").value = "";
};
client.connect().catch((err) => show(err.message, "notice"));
setInterval(ping, 2000);
setTimeout(ping, 200);
