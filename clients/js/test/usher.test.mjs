// Unit tests of @usher/js (the built module, dist/usher.js) against a fake Usher behind a fake
// fetch. Device time is node:test's mock clock; the fake server's clock may be skewed from it.
import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";
import { BASE, FakeChannel, FakeServer, json, PK, settle, SharedStorage } from "./fake.mjs";

const { Usher, UsherError } = await import("../dist/usher.js");
const KEY = `usher.session.${PK}`;
const START = Date.UTC(2030, 0, 1, 12);

beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"], now: START }));
afterEach(() => {
  mock.timers.reset();
  for (const channel of [...FakeChannel.open]) channel.close();
});

function tab(server, storage, options = {}) {
  const usher = new Usher({ publishableKey: PK, baseUrl: BASE + "/", storage, fetch: server.fetch, ...options });
  const events = [];
  usher.onAuthStateChange((event, session) => events.push([event, session?.sessionId ?? null]));
  return { usher, events };
}

const refreshes = (server) => server.calls.filter((call) => call.path === "/auth/refresh");

async function advance(seconds) {
  for (let i = 0; i < seconds; i++) {
    mock.timers.tick(1000);
    await settle();
  }
}

test("the constructor needs publishableKey and baseUrl; getChallengeToken is accepted", () => {
  assert.throws(() => new Usher({ baseUrl: BASE }), TypeError);
  assert.throws(() => new Usher({ publishableKey: PK }), TypeError);
  const usher = new Usher({ publishableKey: PK, baseUrl: BASE, storage: "memory", fetch: () => {},
                            getChallengeToken: async () => "token" });
  assert.equal(usher.session, null);
});

test("a guest sign-in is stored under one key per publishable key and emits SIGNED_IN", async () => {
  const server = new FakeServer();
  const storage = new SharedStorage();
  const { usher, events } = tab(server, storage);
  assert.equal(await usher.ready, null);
  const session = await usher.signInAsGuest();
  assert.equal(session.type, "guest");
  assert.deepEqual(usher.session, session);
  assert.deepEqual([...storage.items.keys()], [KEY]);
  const stored = JSON.parse(storage.getItem(KEY));
  assert.deepEqual(Object.keys(stored), ["session", "accessToken", "refreshToken", "receivedAt", "lifetime"]);
  assert.equal(stored.lifetime, 900);
  assert.equal(stored.receivedAt, START);
  assert.deepEqual(events, [["INITIAL_SESSION", null], ["SIGNED_IN", session.sessionId]]);
  const call = server.calls[0];
  assert.equal(call.path, "/auth/guest");
  assert.equal(call.headers.get("X-Publishable-Key"), PK);
  assert.equal(call.headers.get("Authorization"), null);
});

test("a reload restores the session: ready resolves to it and INITIAL_SESSION carries it", async () => {
  const server = new FakeServer();
  const storage = new SharedStorage();
  const first = tab(server, storage).usher;
  await first.ready;
  const session = await first.signInAsGuest();
  const calls = server.calls.length;
  const reloaded = tab(server, storage);
  assert.deepEqual(await reloaded.usher.ready, session);
  await settle();
  assert.deepEqual(reloaded.events, [["INITIAL_SESSION", session.sessionId]]);
  assert.equal(server.calls.length, calls); // no request: the stored pair is fresh
  const late = [];
  reloaded.usher.onAuthStateChange((event, s) => late.push([event, s.sessionId]));
  await settle();
  assert.deepEqual(late, [["INITIAL_SESSION", session.sessionId]]); // once per listener, also late ones
});

test("storage adapters: memory is the tab's own, session/local use Web Storage, custom may be async", async () => {
  const server = new FakeServer();
  const memory = tab(server, "memory").usher;
  await memory.signInAsGuest();
  assert.equal(await tab(server, "memory").usher.ready, null);

  const local = new SharedStorage();
  const sessionStore = new SharedStorage();
  globalThis.localStorage = local;
  globalThis.sessionStorage = sessionStore;
  try {
    await tab(server, undefined).usher.signInAsGuest();
    assert.ok(local.getItem(KEY) && !sessionStore.getItem(KEY));
    await tab(server, "session").usher.signInAsGuest();
    assert.ok(sessionStore.getItem(KEY));
  } finally {
    delete globalThis.localStorage;
    delete globalThis.sessionStorage;
  }

  const items = new Map();
  const asyncStore = {
    getItem: async (key) => items.get(key) ?? null,
    setItem: async (key, value) => void items.set(key, value),
    removeItem: async (key) => void items.delete(key),
  };
  const custom = tab(server, asyncStore).usher;
  const session = await custom.signInAsGuest();
  assert.deepEqual(await tab(server, asyncStore).usher.ready, session);
  await custom.signOut();
  assert.equal(items.size, 0);
});

test("errors are UsherError with the API's code, message, status, details, request id and Retry-After", async () => {
  const server = new FakeServer();
  const { usher } = tab(server, "memory");
  server.queued.push(() => json(400, { error: "validation_error", message: "Bad.", details: { email: ["Not an email."] } }));
  let error = await usher.requestCode({ email: "x" }).catch((e) => e);
  assert.ok(error instanceof UsherError && error instanceof Error);
  assert.equal(error.name, "UsherError");
  assert.deepEqual([error.error, error.message, error.status, error.details, error.requestId, error.retryAfter],
                   ["validation_error", "Bad.", 400, { email: ["Not an email."] }, "req_400", null]);
  server.queued.push(() => json(429, { error: "rate_limited", message: "Slow down." }, { "Retry-After": "30" }));
  error = await usher.requestCode({ email: "a@example.com" }).catch((e) => e);
  assert.deepEqual([error.error, error.status, error.retryAfter], ["rate_limited", 429, 30]);
  server.queued.push(() => new Response("<html>bad gateway</html>", { status: 502, statusText: "Bad Gateway" }));
  error = await usher.signInAsGuest().catch((e) => e);
  assert.deepEqual([error.error, error.status, error.message, error.requestId], ["http_502", 502, "Bad Gateway", null]);
  server.queued.push(() => Promise.reject(new TypeError("Failed to fetch")));
  error = await usher.signInAsGuest().catch((e) => e);
  assert.deepEqual([error.name, error.error, error.status], ["UsherError", "network_error", 0]);
  assert.match(error.message, /Failed to fetch/);
  assert.equal(usher.session, null);
});

test("verifyCode and exchange upgrade a guest: they send the guest's access token; the session carries guestId", async () => {
  for (const [method, body] of [["verifyCode", { email: "ann@example.com", code: "123456" }],
                                ["exchange", { exchangeCode: "exc_1", codeVerifier: "v".repeat(43) }]]) {
    const server = new FakeServer();
    const { usher, events } = tab(server, "memory");
    const guest = await usher.signInAsGuest();
    assert.deepEqual(await usher.requestCode({ email: "ann@example.com" }), { sent: true, expiresAt: "2030-01-01T00:00:00Z" });
    const session = await usher[method](body);
    const call = server.calls.at(-1);
    assert.match(call.headers.get("Authorization"), /^Bearer h\./);
    assert.deepEqual(call.body, body);
    assert.equal(session.type, "otp");
    assert.equal(session.guestId, guest.consumerId);
    assert.deepEqual(events.map((e) => e[0]), ["INITIAL_SESSION", "SIGNED_IN", "SIGNED_IN"]);
    // Signed in already (not a guest): no token is sent.
    await usher[method](body);
    assert.equal(server.calls.at(-1).headers.get("Authorization"), null);
  }
});

test("a wrong code throws otp_invalid and keeps the guest session", async () => {
  const server = new FakeServer();
  const { usher } = tab(server, "memory");
  const guest = await usher.signInAsGuest();
  const error = await usher.verifyCode({ email: "a@example.com", code: "000000" }).catch((e) => e);
  assert.equal(error.error, "otp_invalid");
  assert.deepEqual(usher.session, guest);
  // A 401 about the code is not about the token: no refresh, no second try of the code.
  assert.deepEqual(server.calls.map((c) => c.path), ["/auth/guest", "/auth/otp/verify"]);
});

test("usher.fetch adds the key and token; on 401 it refreshes once and retries once", async () => {
  const server = new FakeServer();
  const { usher, events } = tab(server, "memory");
  await usher.signInAsGuest();
  await usher.queues.enter("queue_1");
  server.queued.push(() => json(401, { error: "authentication_required" }));
  const response = await usher.fetch("/queues/queue_1/status");
  assert.equal(response.status, 200);
  const [, first, refresh, retry] = server.calls.slice(-4);
  assert.deepEqual([first.path, refresh.path, retry.path], ["/queues/queue_1/status", "/auth/refresh", "/queues/queue_1/status"]);
  assert.notEqual(first.headers.get("Authorization"), retry.headers.get("Authorization"));
  assert.equal(retry.headers.get("X-Publishable-Key"), PK);
  assert.equal(events.at(-1)[0], "TOKEN_REFRESHED");
  // Twice 401: one refresh, one retry, then the 401 is the answer.
  server.queued.push(() => json(401, { error: "authentication_required" }), null,
                     () => json(401, { error: "authentication_required" }));
  const before = server.calls.length;
  assert.equal((await usher.fetch("/queues/queue_1/status")).status, 401);
  assert.equal(server.calls.length - before, 3);
});

test("usher.fetch: a refresh that fails for good clears the session, says SIGNED_OUT, returns the 401", async () => {
  const server = new FakeServer();
  const storage = new SharedStorage();
  const { usher, events } = tab(server, storage);
  const session = await usher.signInAsGuest();
  server.sessions.get(session.sessionId).live = false; // the merchant ended it
  const response = await usher.fetch("/queues/queue_1/status");
  assert.equal(response.status, 401);
  assert.equal(usher.session, null);
  assert.equal(storage.getItem(KEY), null);
  assert.deepEqual(events.at(-1), ["SIGNED_OUT", null]);
  assert.equal(refreshes(server).length, 1);
});

test("refresh never uses a token older than storage's: another tab's newer pair is adopted", async () => {
  const server = new FakeServer();
  const storage = new SharedStorage();
  const a = tab(server, storage, { autoRefresh: false });
  await a.usher.ready;
  await a.usher.signInAsGuest();
  const stale = JSON.parse(storage.getItem(KEY));
  // Another tab refreshes (nothing tells this one: no event), and the grace window passes.
  await advance(5);
  const newer = server.route("POST", "/auth/refresh", new Headers(), { refreshToken: stale.refreshToken }).json();
  storage.setItem(KEY, JSON.stringify({ ...stale, ...(await newer), receivedAt: Date.now() }));
  await advance(30);
  const before = refreshes(server).length;
  const session = await a.usher.refresh();
  assert.equal(refreshes(server).length, before); // adopted, not refreshed with the used token
  assert.equal(session.sessionId, stale.session.sessionId);
  assert.equal((await a.usher.getAccessToken()), JSON.parse(storage.getItem(KEY)).accessToken);
  assert.equal(a.events.at(-1)[0], "TOKEN_REFRESHED");
  // Even when that pair is due: the refresh goes out with storage's token, never the old one.
  await advance(900);
  await a.usher.refresh();
  const used = refreshes(server).at(-1).body.refreshToken;
  assert.notEqual(used, stale.refreshToken);
  assert.ok(a.usher.session);
});

test("tabs refreshing at the same moment converge on one pair (no lock)", async () => {
  const server = new FakeServer();
  const storage = new SharedStorage();
  const tabs = Array.from({ length: 5 }, () => tab(server, storage, { autoRefresh: false }));
  await Promise.all(tabs.map((t) => t.usher.ready));
  await tabs[0].usher.signInAsGuest();
  await settle();
  await advance(880);
  await Promise.all(tabs.map((t) => t.usher.refresh()));
  await settle();
  const tokens = new Set(await Promise.all(tabs.map((t) => t.usher.getAccessToken())));
  assert.equal(tokens.size, 1);
  assert.ok(tabs.every((t) => t.usher.session));
  assert.ok(refreshes(server).length <= 5);
});

test("refresh_token_invalid, _expired and _reused end the session on every tab", async () => {
  for (const code of ["refresh_token_invalid", "refresh_token_expired", "refresh_token_reused"]) {
    const server = new FakeServer();
    const storage = new SharedStorage();
    const a = tab(server, storage, { autoRefresh: false });
    const b = tab(server, storage, { autoRefresh: false });
    await Promise.all([a.usher.ready, b.usher.ready]);
    await a.usher.signInAsGuest();
    await settle();
    assert.ok(b.usher.session); // told by the channel
    server.queued.push(() => json(401, { error: code }));
    const error = await a.usher.refresh().catch((e) => e);
    assert.equal(error.error, code);
    await settle();
    assert.equal(a.usher.session, null);
    assert.equal(b.usher.session, null);
    assert.deepEqual(b.events.map((e) => e[0]), ["INITIAL_SESSION", "SIGNED_IN", "SIGNED_OUT"]);
  }
});

test("network errors and 503 keep the session and retry with backoff", async () => {
  const server = new FakeServer({ accessTtl: 120 });
  const { usher, events } = tab(server, "memory", { refreshMargin: 30 });
  await usher.signInAsGuest();
  for (let i = 0; i < 3; i++) server.queued.push(() => Promise.reject(new TypeError("offline")));
  server.queued.push(() => json(503, { error: "service_unavailable" }, { "Retry-After": "7" }));
  await advance(90); // the margin: the first refresh fails (network)
  assert.equal(refreshes(server).length, 1);
  const times = [];
  for (let second = 0; second < 40 && refreshes(server).length < 5; second++) {
    const before = refreshes(server).length;
    await advance(1);
    if (refreshes(server).length > before) times.push(second + 1);
  }
  assert.equal(refreshes(server).length, 5);
  const gaps = times.map((t, i) => t - (times[i - 1] ?? 0));
  // 2 s, 4 s, 8 s (±25 % jitter), then the 503's Retry-After of 7 s.
  assert.ok(gaps[0] >= 1 && gaps[0] <= 3 && gaps[1] >= 3 && gaps[1] <= 5 && gaps[2] >= 6 && gaps[2] <= 10, String(gaps));
  assert.equal(gaps[3], 7, String(gaps));
  assert.ok(usher.session);
  assert.ok(!events.some((e) => e[0] === "SIGNED_OUT"));
  assert.equal(events.at(-1)[0], "TOKEN_REFRESHED");
});

for (const skew of [3 * 3600, -3 * 3600]) {
  test(`a device clock ${skew > 0 ? "3 h behind" : "3 h ahead of"} the server neither loops nor sends an expired token`, async () => {
    const server = new FakeServer({ skew });
    const { usher } = tab(server, "memory");
    await usher.signInAsGuest();
    await advance(600);
    assert.equal(refreshes(server).length, 0); // no refresh loop although exp is hours off the device clock
    const token = await usher.getAccessToken();
    assert.equal(server.bearer(new Headers({ Authorization: `Bearer ${token}` })).type, "guest");
    await advance(300); // past 900 − 60 s after receipt: exactly one refresh
    assert.equal(refreshes(server).length, 1);
    await advance(600);
    assert.equal(refreshes(server).length, 1);
    assert.equal((await usher.queues.enter("q")).status, "QUEUED");
  });
}

test("a clock that jumps back counts the token as expired and refreshes once", async () => {
  const server = new FakeServer();
  const { usher } = tab(server, "memory");
  await usher.signInAsGuest();
  mock.timers.setTime(START - 3600 * 1000);
  await usher.getAccessToken();
  assert.equal(refreshes(server).length, 1);
  await usher.getAccessToken();
  assert.equal(refreshes(server).length, 1);
});

test("a short-lived token refreshes at half its life, not in a loop", async () => {
  const server = new FakeServer({ accessTtl: 60 });
  const { usher } = tab(server, "memory", { refreshMargin: 60 });
  await usher.signInAsGuest();
  await advance(100);
  assert.ok(refreshes(server).length >= 3 && refreshes(server).length <= 4, String(refreshes(server).length));
});

test("queues and experiences: method, path and token of each call", async () => {
  const server = new FakeServer();
  const { usher } = tab(server, "memory");
  await usher.signInAsGuest();
  const entered = await usher.queues.enter("queue/1");
  assert.equal(entered.status, "QUEUED");
  assert.equal((await usher.queues.status("queue/1")).status, "QUEUED");
  assert.equal((await usher.queues.leave("queue/1")).status, "LEFT");
  server.queued.push(() => json(200, { id: "exp_1", name: "Drop" }));
  assert.equal((await usher.experiences.get("exp_1")).name, "Drop");
  const calls = server.calls.slice(-4).map((c) => [c.method, c.path, Boolean(c.headers.get("Authorization"))]);
  assert.deepEqual(calls, [["POST", "/queues/queue%2F1/enter", true], ["GET", "/queues/queue%2F1/status", true],
                           ["POST", "/queues/queue%2F1/leave", true], ["GET", "/experiences/exp_1", false]]);
  const missing = await usher.queues.status("queue_2").catch((e) => e);
  assert.deepEqual([missing.error, missing.status], ["not_found", 404]);
});

test("watch polls at its interval, follows pollAfter, honours Retry-After, backs off, stops", async () => {
  const server = new FakeServer();
  const { usher } = tab(server, "memory");
  await usher.signInAsGuest();
  await usher.queues.enter("q");
  const states = [];
  const errors = [];
  const statusTimes = () => server.calls.filter((c) => c.path === "/queues/q/status").length;
  const stop = usher.queues.watch("q", (state) => states.push(state.status), { interval: 5, onError: (e) => errors.push(e.error) });
  await settle();
  assert.equal(states.length, 1);
  await advance(5);
  assert.equal(states.length, 2);
  server.queued.push(() => json(200, { queueId: "q", status: "QUEUED", position: 3, pollAfter: 20 }));
  await advance(5);
  assert.equal(states.length, 3);
  await advance(19);
  assert.equal(states.length, 3); // the server asked for 20 s
  server.queued.push(() => json(429, { error: "rate_limited" }, { "Retry-After": "40" }));
  await advance(1);
  assert.deepEqual(errors, ["rate_limited"]);
  const at = statusTimes();
  await advance(39);
  assert.equal(statusTimes(), at);
  server.queued.push(() => Promise.reject(new TypeError("offline")));
  await advance(1);
  assert.deepEqual(errors, ["rate_limited", "network_error"]);
  const afterFailure = statusTimes();
  await advance(14);
  assert.equal(statusTimes(), afterFailure); // second failure in a row: 5 s × 2² (±25 %), not 5 s
  for (let second = 0; second < 12 && statusTimes() === afterFailure; second++) await advance(1);
  assert.equal(statusTimes(), afterFailure + 1); // by 26 s
  stop();
  const stopped = statusTimes();
  await advance(60);
  assert.equal(statusTimes(), stopped);
});

test("watch stops when the session ends", async () => {
  const server = new FakeServer();
  const { usher } = tab(server, "memory");
  await usher.signInAsGuest();
  await usher.queues.enter("q");
  let states = 0;
  usher.queues.watch("q", () => states++, { interval: 2 });
  await settle();
  await usher.signOut();
  const count = server.calls.length;
  await advance(30);
  assert.equal(server.calls.length, count);
  assert.equal(states, 1);
});

test("signOut: local and global end it here, others keeps this session", async () => {
  for (const scope of ["local", "global", "others"]) {
    const server = new FakeServer();
    const storage = new SharedStorage();
    const { usher, events } = tab(server, storage);
    await usher.signInAsGuest();
    await usher.signOut({ scope });
    const call = server.calls.at(-1);
    assert.deepEqual([call.method, call.path, call.body], ["POST", "/auth/logout", { scope }]);
    assert.match(call.headers.get("Authorization"), /^Bearer /);
    assert.equal(Boolean(usher.session), scope === "others");
    assert.equal(Boolean(storage.getItem(KEY)), scope === "others");
    assert.equal(events.at(-1)[0], scope === "others" ? "SIGNED_IN" : "SIGNED_OUT");
  }
  // Offline: a local sign-out still ends the session on this device.
  const server = new FakeServer();
  const { usher } = tab(server, "memory");
  await usher.signInAsGuest();
  server.queued.push(() => Promise.reject(new TypeError("offline")));
  await usher.signOut();
  assert.equal(usher.session, null);
});

test("other tabs follow sign-in, refresh and sign-out with their own events", async () => {
  const server = new FakeServer();
  const storage = new SharedStorage();
  const a = tab(server, storage, { autoRefresh: false });
  const b = tab(server, storage, { autoRefresh: false });
  await Promise.all([a.usher.ready, b.usher.ready]);
  const session = await a.usher.signInAsGuest();
  await settle();
  assert.deepEqual(b.usher.session, session);
  await a.usher.refresh();
  await settle();
  assert.equal(await b.usher.getAccessToken(), await a.usher.getAccessToken());
  await a.usher.signOut();
  await settle();
  assert.equal(b.usher.session, null);
  assert.deepEqual(b.events.map((e) => e[0]), ["INITIAL_SESSION", "SIGNED_IN", "TOKEN_REFRESHED", "SIGNED_OUT"]);
});

test("concurrent refresh calls in one tab are one request", async () => {
  const server = new FakeServer();
  const { usher } = tab(server, "memory");
  await usher.signInAsGuest();
  const [one, two] = await Promise.all([usher.refresh(), usher.refresh()]);
  assert.deepEqual(one, two);
  assert.equal(refreshes(server).length, 1);
  const error = await new Usher({ publishableKey: PK, baseUrl: BASE, storage: "memory", fetch: server.fetch })
    .refresh().catch((e) => e);
  assert.equal(error.error, "no_session");
});

test("wake-up checks: visibilitychange and online refresh a due session when timers did not run", async () => {
  const win = new EventTarget();
  globalThis.addEventListener = win.addEventListener.bind(win);
  globalThis.document = Object.assign(new EventTarget(), { visibilityState: "visible" });
  try {
    const server = new FakeServer();
    const storage = new SharedStorage();
    const { usher, events } = tab(server, storage, { autoRefresh: false }); // no timer: only wake-ups
    await usher.signInAsGuest();
    mock.timers.setTime(START + 850 * 1000); // the device slept past the margin
    await settle();
    assert.equal(refreshes(server).length, 0);
    document.dispatchEvent(new Event("visibilitychange"));
    await settle();
    assert.equal(refreshes(server).length, 1);
    document.visibilityState = "hidden";
    mock.timers.setTime(START + 2 * 850 * 1000);
    document.dispatchEvent(new Event("visibilitychange"));
    await settle();
    assert.equal(refreshes(server).length, 1); // hidden: nothing
    win.dispatchEvent(new Event("online"));
    await settle();
    assert.equal(refreshes(server).length, 2);
    assert.deepEqual(events.map((e) => e[0]), ["INITIAL_SESSION", "SIGNED_IN", "TOKEN_REFRESHED", "TOKEN_REFRESHED"]);
    // A storage event for this key (another tab signed out) is followed at once.
    storage.removeItem(KEY);
    win.dispatchEvent(Object.assign(new Event("storage"), { key: "unrelated" }));
    await settle();
    assert.ok(usher.session);
    win.dispatchEvent(Object.assign(new Event("storage"), { key: KEY }));
    await settle();
    assert.equal(usher.session, null);
    assert.equal(events.at(-1)[0], "SIGNED_OUT");
  } finally {
    delete globalThis.addEventListener;
    delete globalThis.document;
  }
});

test("after a refresh, expiresAt is the server's exp, not the device clock's guess", async () => {
  const server = new FakeServer({ skew: 3 * 3600 });
  const { usher } = tab(server, "memory");
  await usher.signInAsGuest();
  await advance(10);
  const session = await usher.refresh();
  const claims = JSON.parse(Buffer.from((await usher.getAccessToken()).split(".")[1], "base64url"));
  assert.equal(session.expiresAt, new Date(claims.exp * 1000).toISOString().replace(".000Z", "Z"));
  assert.equal(Date.parse(session.expiresAt) - Date.now(), (3 * 3600 + 900) * 1000);
});

test("bot defense: ALTCHA is solved by the SDK itself and each protected call retried once", async () => {
  const server = new FakeServer();
  server.defend("altcha");
  const { usher } = tab(server, new SharedStorage());
  await usher.ready;
  const session = await usher.signInAsGuest();
  assert.equal(session.type, "guest");
  await usher.requestCode({ email: "ann@example.com" });
  const state = await usher.queues.enter("queue_1");
  assert.equal(state.status, "QUEUED");
  const paths = server.calls.map((call) => call.path);
  assert.deepEqual(paths, ["/auth/guest", "/auth/challenge", "/auth/guest", "/auth/otp/request", "/auth/challenge",
                           "/auth/otp/request", "/queues/queue_1/enter", "/auth/challenge", "/queues/queue_1/enter"]);
  const proof = JSON.parse(Buffer.from(server.calls[2].headers.get("X-Usher-Challenge"), "base64").toString());
  assert.deepEqual(proof, { algorithm: "SHA-256", challenge: proof.challenge, number: 321,
                            salt: "5a1t1?expires=1893456000&", signature: "sig" });
  assert.equal(server.calls[1].headers.get("X-Publishable-Key"), PK); // the challenge is asked with the key
});

test("bot defense: a second refusal is thrown, not retried again", async () => {
  const server = new FakeServer();
  server.defend("altcha");
  server.defense.number = 5000; // beyond maxnumber: the SDK finds no solution and retries without one
  const { usher } = tab(server, new SharedStorage());
  await usher.ready;
  await assert.rejects(usher.signInAsGuest(), (error) => error instanceof UsherError &&
    error.error === "challenge_required" && error.status === 403 && error.details.provider === "altcha");
  assert.deepEqual(server.calls.map((call) => call.path), ["/auth/guest", "/auth/challenge", "/auth/guest"]);
  assert.equal(usher.session, null);
});

test("bot defense: a captcha's token comes from the page's getChallengeToken; without it the refusal is thrown", async () => {
  const server = new FakeServer();
  server.defend("turnstile");
  const asked = [];
  const { usher } = tab(server, new SharedStorage(), {
    getChallengeToken: async (provider, siteKey) => (asked.push([provider, siteKey]), "widget-token") });
  await usher.ready;
  assert.equal((await usher.signInAsGuest()).type, "guest");
  assert.deepEqual(asked, [["turnstile", "site-1"]]);
  assert.equal(server.calls[2].headers.get("X-Usher-Challenge"), "widget-token");
  const other = new FakeServer();
  other.defend("hcaptcha");
  const { usher: withoutPage } = tab(other, new SharedStorage());
  await withoutPage.ready;
  await assert.rejects(withoutPage.signInAsGuest(), (error) => error.error === "challenge_required");
});
