import { createHash } from "node:crypto";

// A fake Usher (its consumer routes, refresh with a grace window, clocks of its own) behind a
// fake fetch, a shared storage and an in-process BroadcastChannel: what "several tabs on one
// device" look like to the SDK, without a browser.

export const PK = "pk_test_unit";
export const BASE = "https://auth.example.test";

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");

export class FakeServer {
  constructor({ skew = 0, accessTtl = 900, grace = 10 } = {}) {
    this.skew = skew * 1000; // server clock minus device clock (ms)
    this.accessTtl = accessTtl;
    this.grace = grace;
    this.calls = [];
    this.queued = []; // answers (functions) to give before routing, one per call
    this.refreshTokens = new Map(); // token -> {sid, successor, rotatedAt}
    this.sessions = new Map(); // sid -> {type, consumerId, guestId, live}
    this.counter = 0;
    this.queueStates = new Map();
    this.fetch = this.fetch.bind(this);
  }

  now() {
    return Date.now() + this.skew;
  }

  pair(sid) {
    const iat = Math.floor(this.now() / 1000);
    const n = ++this.counter;
    const accessToken = `h.${b64({ sid, iat, exp: iat + this.accessTtl, n })}.s`;
    const refreshToken = `r${n}.${sid}`;
    this.refreshTokens.set(refreshToken, { sid, successor: null, rotatedAt: 0 });
    return { accessToken, refreshToken };
  }

  startSession(type, consumerId, guestId) {
    const sid = `sess_${++this.counter}`;
    this.sessions.set(sid, { type, consumerId, guestId, live: true });
    const pair = this.pair(sid);
    const session = { type, consumerId, sessionId: sid, expiresAt: new Date(this.now() + this.accessTtl * 1000).toISOString() };
    if (guestId) session.guestId = guestId;
    return { session, ...pair };
  }

  bearer(headers) {
    const value = headers.get("Authorization");
    if (!value) return null;
    const claims = JSON.parse(Buffer.from(value.slice(7).split(".")[1], "base64url"));
    const session = this.sessions.get(claims.sid);
    if (!session?.live || claims.exp * 1000 <= this.now()) return false;
    return { sid: claims.sid, ...session };
  }

  async fetch(url, init = {}) {
    const headers = new Headers(init.headers);
    const path = url.slice(BASE.length + "/api/v1".length);
    const body = init.body ? JSON.parse(init.body) : undefined;
    this.calls.push({ method: init.method || "GET", path, headers, body });
    const next = this.queued.shift();
    if (next) return next();
    if (headers.get("X-Publishable-Key") !== PK) return json(401, { error: "authentication_required" });
    return this.route(init.method || "GET", path, headers, body);
  }

  /** Bot defense as Usher answers it: `provider` "altcha" (a challenge made here, each solution
   * once) or a captcha (its widget's token is "widget-token"), on guest, OTP request and enter. */
  defend(provider) {
    this.defense = { provider, number: 321, used: new Set(), challenges: 0 };
  }

  guard(path, headers) {
    const defense = this.defense;
    if (!defense || !/^\/(auth\/guest|auth\/otp\/request|queues\/[^/]+\/enter)$/.test(path)) return null;
    const proof = headers.get("X-Usher-Challenge");
    let ok = false;
    if (defense.provider === "altcha" && proof) {
      const payload = JSON.parse(Buffer.from(proof, "base64").toString());
      ok = payload.number === defense.number && payload.signature === "sig" && payload.salt.startsWith("5a1t")
        && !defense.used.has(payload.salt);
      defense.used.add(payload.salt);
    } else ok = proof === "widget-token";
    return ok ? null : json(403, { error: "challenge_required", message: "Solve the challenge and send it again.",
                                   details: { provider: defense.provider } });
  }

  route(method, path, headers, body) {
    if (path === "/auth/challenge") {
      const defense = this.defense;
      if (!defense) return json(200, { provider: "off" });
      defense.challenges++;
      if (defense.provider !== "altcha") return json(200, { provider: defense.provider, siteKey: "site-1" });
      const salt = `5a1t${defense.challenges}?expires=1893456000&`; // a fresh challenge each time
      const challenge = createHash("sha256").update(salt + defense.number).digest("hex");
      return json(200, { provider: "altcha", challenge: { algorithm: "SHA-256", challenge, maxnumber: 1000,
                                                          salt, signature: "sig" } });
    }
    const refused = this.guard(path, headers);
    if (refused) return refused;
    if (path === "/auth/guest") return json(201, this.startSession("guest", `guest_${++this.counter}`, undefined));
    if (path === "/auth/otp/request") return json(202, { sent: true, expiresAt: "2030-01-01T00:00:00Z" });
    if (path === "/auth/otp/verify" || path === "/auth/external/exchange") {
      if ((body.code ?? body.exchangeCode) === "000000") return json(401, { error: "otp_invalid", message: "The code is not valid." });
      const guest = this.bearer(headers);
      if (guest === false) return json(401, { error: "authentication_required" });
      if (guest) this.sessions.get(guest.sid).live = false;
      return json(200, this.startSession("otp", "cons_1", guest ? guest.consumerId : undefined));
    }
    if (path === "/auth/refresh") {
      const entry = this.refreshTokens.get(body.refreshToken);
      if (!entry || !this.sessions.get(entry.sid).live) return json(401, { error: "refresh_token_invalid" });
      if (entry.successor) {
        if (this.now() - entry.rotatedAt <= this.grace * 1000) return json(200, entry.successor);
        this.sessions.get(entry.sid).live = false;
        return json(401, { error: "refresh_token_reused" });
      }
      entry.successor = this.pair(entry.sid);
      entry.rotatedAt = this.now();
      return json(200, entry.successor);
    }
    const caller = this.bearer(headers);
    if (!caller) return json(401, { error: "authentication_required", message: "Sign in." });
    if (path === "/auth/logout") {
      for (const [sid, session] of this.sessions) {
        const mine = sid === caller.sid;
        if (session.consumerId === caller.consumerId && (body.scope === "global" || (body.scope === "local") === mine))
          session.live = false;
      }
      return new Response(null, { status: 204 });
    }
    const queue = path.match(/^\/queues\/([^/]+)\/(enter|status|leave)$/);
    if (queue) {
      const key = `${queue[1]}:${caller.consumerId}`;
      if (queue[2] === "enter") this.queueStates.set(key, "QUEUED");
      if (queue[2] === "leave") this.queueStates.set(key, "LEFT");
      if (!this.queueStates.has(key)) return json(404, { error: "not_found", message: "Not in this queue." });
      return json(200, { queueId: queue[1], consumerId: caller.consumerId, status: this.queueStates.get(key), position: 1 });
    }
    return json(404, { error: "not_found" });
  }
}

export function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", "X-Request-Id": `req_${status}`, ...headers },
  });
}

/** A Web Storage of one device: every Usher given it shares it, as tabs share localStorage. */
export class SharedStorage {
  constructor() {
    this.items = new Map();
    this.writes = 0;
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.writes++;
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

/** BroadcastChannel within one process: a message reaches the other instances of that name. */
export class FakeChannel {
  static open = new Set();
  constructor(name) {
    this.name = name;
    this.onmessage = null;
    FakeChannel.open.add(this);
  }
  postMessage(data) {
    for (const other of FakeChannel.open)
      if (other !== this && other.name === this.name) queueMicrotask(() => other.onmessage?.({ data }));
  }
  close() {
    FakeChannel.open.delete(this);
  }
}
globalThis.BroadcastChannel = FakeChannel;

/** Let pending promise chains (fetch, storage, listeners) run. */
export const settle = async () => {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
};
