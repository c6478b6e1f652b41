// Codecs: a message object <-> the bytes of a TLV value, one per server `protocol`.
//
// json needs nothing; msgpack, bson and protobuf load their npm package on
// first use (`make web` installs them into web/node_modules). In a browser the
// packages are loaded from node_modules beside this file, so nothing is
// fetched from the internet and no bundler or import map is needed.

const inBrowser = typeof window !== "undefined" && typeof document !== "undefined";

async function load(name, browserPath) {
  if (inBrowser) return import(new URL(browserPath, import.meta.url).href);
  return import(name);
}

function loadScript(path) {
  // protobufjs ships no ES module: its browser build sets globalThis.protobuf.
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = new URL(path, import.meta.url).href;
    script.onload = () => resolve(globalThis.protobuf);
    script.onerror = () => reject(new Error(`cannot load ${script.src}: run \`make web\``));
    document.head.appendChild(script);
  });
}

/** The declared fields of `msg` as a plain object (what every codec encodes). */
export function fieldsOf(msg) {
  const out = {};
  for (const name of msg.constructor.fields) out[name] = msg[name];
  return out;
}

const utf8 = new TextEncoder();
const utf8decode = new TextDecoder();

const json = {
  name: "json",
  encode: (msg) => utf8.encode(JSON.stringify(fieldsOf(msg))),
  decode: (Type, bytes) => new Type(bytes.length ? JSON.parse(utf8decode.decode(bytes)) : {}),
};

async function msgpackCodec() {
  const mp = await load("@msgpack/msgpack", "./node_modules/@msgpack/msgpack/dist.esm/index.mjs");
  return {
    name: "msgpack",
    encode: (msg) => mp.encode(fieldsOf(msg)),
    decode: (Type, bytes) => new Type(bytes.length ? mp.decode(bytes) : {}),
  };
}

async function bsonCodec() {
  const mod = await load("bson", "./node_modules/bson/lib/bson.mjs");
  const BSON = mod.BSON ?? mod;
  return {
    name: "bson",
    encode: (msg) => BSON.serialize(fieldsOf(msg)),
    decode: (Type, bytes) => new Type(bytes.length ? BSON.deserialize(bytes) : {}),
  };
}

async function protobufCodec(catalog) {
  let pb = globalThis.protobuf;
  if (!pb) {
    pb = inBrowser
      ? await loadScript("./node_modules/protobufjs/dist/protobuf.min.js")
      : (await import("protobufjs")).default;
  }
  // keepCase: the field names are the server's (snake_case), as in the JSON codecs.
  const root = pb.parse(catalog.PROTO, { keepCase: true }).root;
  const types = new Map();
  const typeOf = (Type) => {
    let t = types.get(Type);
    if (!t) {
      t = root.lookupType(`${catalog.PACKAGE}.${Type.name}`);
      types.set(Type, t);
    }
    return t;
  };
  const options = { longs: Number, enums: String, defaults: true, arrays: true, objects: true };
  return {
    name: "protobuf",
    encode: (msg) => {
      const t = typeOf(msg.constructor);
      return t.encode(t.fromObject(fieldsOf(msg))).finish();
    },
    decode: (Type, bytes) => {
      const t = typeOf(Type);
      return new Type(t.toObject(t.decode(bytes), options));
    },
  };
}

/** The codec for `protocol` (the server's `protocol` setting). */
export async function makeCodec(protocol, catalog) {
  switch (protocol) {
    case "json":
      return json;
    case "msgpack":
      return msgpackCodec();
    case "bson":
      return bsonCodec();
    case "protobuf":
      return protobufCodec(catalog);
    default:
      throw new Error(`unknown protocol ${JSON.stringify(protocol)}`);
  }
}
