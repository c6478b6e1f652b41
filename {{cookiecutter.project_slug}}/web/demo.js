// The demo page: log in, join a room, chat, watch RoomTick and the ping round trip.
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
  delete document.body.dataset.connected;
});
client.on("reconnecting", (r) => {
  $("status").textContent = `reconnecting in ${r.delay} ms`;
});

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
