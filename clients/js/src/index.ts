/**
 * @usher/js: a shop's front end talks to Usher through this instead of hand-written `fetch`
 * calls. The contract is docs/sdk.md (the shared spec): every exported name is relied on.
 *
 * The tab model, in short: one stored record per publishable key (tokens, session, when it was
 * received), shared by every tab of the origin. No lock: Usher gives racing refreshes of one
 * token the same successor pair, so tabs may refresh at once; what a tab never does is refresh
 * with a token older than storage's (it re-reads storage first and adopts a newer pair).
 */
import type { components } from "./openapi";

type Schemas = components["schemas"];
export type Session = Schemas["SessionInfo"];
export type SessionTokens = Schemas["SessionTokens"];
export type Experience = Schemas["ExperienceOut"];
/** `pollAfter` (seconds) is the server's hint for the next status poll, when it sends one. */
export type QueueState = Schemas["QueueConsumerState"] & { pollAfter?: number | null };
export type CodeRequest = Schemas["OtpRequestIn"];
export type CodeVerification = Schemas["OtpVerifyIn"];
export type Exchange = Schemas["ExchangeIn"];
export type AuthEvent = "INITIAL_SESSION" | "SIGNED_IN" | "TOKEN_REFRESHED" | "SIGNED_OUT";
export type AuthListener = (event: AuthEvent, session: Session | null) => void;

/** Any Web Storage-like object; methods may return promises. */
export interface StorageAdapter {
  getItem(key: string): string | null | Promise<string | null>;
  setItem(key: string, value: string): void | Promise<void>;
  removeItem(key: string): void | Promise<void>;
}

export interface UsherOptions {
  /** `pk_test_…` / `pk_live_…` (required). */
  publishableKey: string;
  /** Usher's origin, e.g. `https://auth.example.com` (required). */
  baseUrl: string;
  /** Where the session lives: `"local"` (default, shared by the origin's tabs), `"session"`, `"memory"` or an adapter. */
  storage?: "local" | "session" | "memory" | StorageAdapter;
  /** Refresh in the background before the access token expires (default true). */
  autoRefresh?: boolean;
  /** Seconds before expiry at which to refresh (default 60). */
  refreshMargin?: number;
  /** The `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
  /**
   * Bot defense with a captcha (`turnstile`, `hcaptcha`): when a route answers
   * `challenge_required`, the SDK asks the page for the widget's token for `provider` and
   * `siteKey`, then retries once. ALTCHA needs nothing: the SDK solves it itself.
   */
  getChallengeToken?: (provider: string, siteKey: string) => Promise<string>;
}

export interface SignOutOptions {
  scope?: "local" | "others" | "global";
}

export interface WatchOptions {
  /** Seconds between polls when the server gives no `pollAfter` (default 5). */
  interval?: number;
  /** Called with each error that does not end the watch (network, 429, 503, …). */
  onError?: (error: UsherError) => void;
}

interface Stored {
  accessToken: string;
  refreshToken: string;
  session: Session;
  /** Device time (ms) at which the access token was received. */
  receivedAt: number;
  /** The access token's lifetime in seconds (`exp − iat`), judged from `receivedAt`. */
  lifetime: number;
}

/** Every non-2xx answer, and network failures (`network_error`, status 0). */
export class UsherError extends Error {
  override readonly name = "UsherError";
  constructor(
    readonly error: string,
    message: string,
    readonly status: number,
    readonly details: Record<string, unknown> | null = null,
    readonly requestId: string | null = null,
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }
}

const ENDS_SESSION = ["refresh_token_invalid", "refresh_token_expired", "refresh_token_reused"];
// 401s about the body, not the token: a refresh would not help (and a retry would spend a try).
const NOT_THE_TOKEN = ["otp_invalid", "otp_expired", "exchange_code_invalid", "exchange_code_expired"];
const MAX_DELAY = 2147483647; // setTimeout's largest delay (ms)

async function errorOf(response: Response): Promise<UsherError> {
  let body: { error?: string; message?: string; details?: Record<string, unknown> } = {};
  try {
    body = await response.json();
  } catch {
    /* not JSON: a proxy's page */
  }
  const retry = Number(response.headers.get("Retry-After"));
  return new UsherError(
    body.error || "http_" + response.status,
    body.message || response.statusText || "HTTP " + response.status,
    response.status,
    body.details || null,
    response.headers.get("X-Request-Id"),
    response.headers.has("Retry-After") && retry >= 0 ? retry : null,
  );
}

const networkError = (cause: unknown) =>
  new UsherError("network_error", "Usher could not be reached: " + ((cause as Error)?.message || cause), 0);

/** `iat` and `exp` of a JWT (both 0 when unreadable: then it counts as expired). */
function claimsOf(token: string): { iat: number; exp: number } {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    return claims.exp > claims.iat ? claims : { iat: 0, exp: 0 };
  } catch {
    return { iat: 0, exp: 0 };
  }
}

/** What is stored of a pair: its lifetime is `exp − iat`, counted from now (receipt) on this device. */
function record(pair: Schemas["TokenPair"], session: Session): Stored {
  const { iat, exp } = claimsOf(pair.accessToken);
  return { ...pair, session, receivedAt: Date.now(), lifetime: exp - iat };
}

/**
 * ALTCHA: the number behind `challenge` (SHA-256 of `salt` + number, at most `max`), or -1.
 * Self-contained (globals only): it also runs as a Web Worker's source.
 */
async function searchAltcha(challenge: string, salt: string, max: number): Promise<number> {
  const text = new TextEncoder();
  for (let n = 0; n <= max; n++) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", text.encode(salt + n)));
    let hex = "";
    for (const byte of digest) hex += (byte < 16 ? "0" : "") + byte.toString(16);
    if (hex === challenge) return n;
  }
  return -1;
}

/** Off the main thread where the page's CSP allows a `blob:` worker, inline otherwise. */
function searchOffThread(challenge: string, salt: string, max: number): Promise<number> {
  return new Promise((resolve) => {
    const inline = () => void searchAltcha(challenge, salt, max).then(resolve);
    let worker: Worker;
    try {
      const source = `onmessage=async e=>postMessage(await(${searchAltcha})(...e.data))`;
      worker = new Worker(URL.createObjectURL(new Blob([source], { type: "text/javascript" })));
    } catch {
      return inline(); // no Worker, or the CSP refused it
    }
    worker.onmessage = (event) => (worker.terminate(), resolve(event.data));
    worker.onerror = () => (worker.terminate(), inline());
    worker.postMessage([challenge, salt, max]);
  });
}

async function solveAltcha(asked: Schemas["AltchaChallenge"]): Promise<string | null> {
  const number = await (typeof Worker === "function" ? searchOffThread : searchAltcha)(
    asked.challenge, asked.salt, asked.maxnumber);
  if (number < 0) return null; // not solvable: the retry answers challenge_required
  const { algorithm, challenge, salt, signature } = asked;
  return btoa(JSON.stringify({ algorithm, challenge, number, salt, signature }));
}

function memoryStorage(): StorageAdapter {
  const items = new Map<string, string>();
  return {
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => void items.set(key, value),
    removeItem: (key) => void items.delete(key),
  };
}

function pickStorage(choice: UsherOptions["storage"]): StorageAdapter {
  if (choice && typeof choice === "object") return choice;
  try {
    const web = choice === "session" ? globalThis.sessionStorage : choice === "memory" ? null : globalThis.localStorage;
    if (web) return web;
  } catch {
    /* storage blocked (a sandboxed frame): memory */
  }
  return memoryStorage();
}

export class Usher {
  /** The current session, or null. */
  session: Session | null = null;
  /** Resolves to the session restored from storage, or null. */
  readonly ready: Promise<Session | null>;
  readonly queues: {
    enter(queueId: string): Promise<QueueState>;
    status(queueId: string): Promise<QueueState>;
    leave(queueId: string): Promise<QueueState>;
    watch(queueId: string, onState: (state: QueueState) => void, options?: WatchOptions): () => void;
  };
  readonly experiences: { get(experienceId: string): Promise<Experience> };

  private readonly key: string;
  private readonly base: string;
  private readonly storage: StorageAdapter;
  private readonly send: typeof fetch;
  private readonly margin: number;
  private readonly auto: boolean;
  private readonly listeners = new Map<AuthListener, boolean>(); // listener -> has seen INITIAL_SESSION
  private readonly channel: BroadcastChannel | null = null;
  private stored: Stored | null = null;
  private restored = false;
  private running: Promise<Session> | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;

  constructor(private readonly options: UsherOptions) {
    if (!options?.publishableKey || !options.baseUrl) throw new TypeError("Usher needs publishableKey and baseUrl.");
    this.key = "usher.session." + options.publishableKey;
    this.base = options.baseUrl.replace(/\/+$/, "") + "/api/v1";
    this.storage = pickStorage(options.storage);
    this.send = options.fetch || ((input, init) => globalThis.fetch(input, init));
    this.margin = options.refreshMargin ?? 60;
    this.auto = options.autoRefresh !== false;
    const shared = options.storage !== "memory" && options.storage !== "session";
    if (shared && typeof BroadcastChannel === "function") {
      this.channel = new BroadcastChannel(this.key);
      this.channel.onmessage = () => void this.sync();
    }
    if (typeof addEventListener === "function") {
      addEventListener("storage", (event) => event.key === this.key && void this.sync());
      addEventListener("online", () => void this.wake());
      addEventListener("pageshow", () => void this.wake());
    }
    if (typeof document === "object")
      document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && void this.wake());

    const queue = (id: string, action: string) => "/queues/" + encodeURIComponent(id) + "/" + action;
    this.queues = {
      enter: (id) => this.call("POST", queue(id, "enter")),
      status: (id) => this.call("GET", queue(id, "status")),
      leave: (id) => this.call("POST", queue(id, "leave")),
      watch: (id, onState, watchOptions) => this.watch(id, onState, watchOptions),
    };
    this.experiences = { get: (id) => this.call("GET", "/experiences/" + encodeURIComponent(id), undefined, false) };

    this.ready = this.read().then(async (stored) => {
      this.adopt(stored);
      await this.wake();
      this.restored = true;
      for (const listener of this.listeners.keys()) this.initial(listener);
      return this.session;
    });
  }

  /** Subscribe to `INITIAL_SESSION`, `SIGNED_IN`, `TOKEN_REFRESHED`, `SIGNED_OUT`; returns the unsubscribe. */
  onAuthStateChange(listener: AuthListener): () => void {
    this.listeners.set(listener, false);
    if (this.restored) queueMicrotask(() => this.initial(listener));
    return () => void this.listeners.delete(listener);
  }

  signInAsGuest(): Promise<Session> {
    return this.signIn("/auth/guest", undefined, false);
  }

  requestCode(identifier: CodeRequest): Promise<Schemas["OtpRequestOut"]> {
    return this.call("POST", "/auth/otp/request", identifier, false);
  }

  /** Signs in with the code; a guest session is upgraded (its queue places move over). */
  verifyCode(verification: CodeVerification): Promise<Session> {
    return this.signIn("/auth/otp/verify", verification, this.session?.type === "guest");
  }

  /** Signs in with an external exchange code; a guest session is upgraded. */
  exchange(exchange: Exchange): Promise<Session> {
    return this.signIn("/auth/external/exchange", exchange, this.session?.type === "guest");
  }

  /** Rotates the tokens (or adopts the pair another tab just stored). */
  refresh(): Promise<Session> {
    return (this.running ||= this.rotate().finally(() => (this.running = null)));
  }

  /** An access token good for at least `refreshMargin` seconds (refreshing if needed), or null. */
  async getAccessToken(): Promise<string | null> {
    await this.ready;
    await this.wake();
    const stored = this.stored;
    return stored && this.left(stored) > 0 ? stored.accessToken : null;
  }

  async signOut(options: SignOutOptions = {}): Promise<void> {
    const scope = options.scope || "local";
    if (this.stored) {
      const response = await this.fetch("/auth/logout", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ scope }),
      }).catch((error) => (scope === "others" ? Promise.reject(error) : null)); // local/global: end it here anyway
      if (response && !response.ok && response.status !== 401 && scope === "others") throw await errorOf(response);
    }
    if (scope !== "others") await this.write(null);
  }

  /** `fetch` for a consumer route (relative to /api/v1): keys and token added, one refresh-and-retry on 401. */
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    await this.ready;
    const attempt = async () => {
      const headers = new Headers(init.headers);
      headers.set("X-Publishable-Key", this.options.publishableKey);
      const token = await this.getAccessToken();
      if (token) headers.set("Authorization", "Bearer " + token);
      try {
        return await this.send(this.base + path, { ...init, headers });
      } catch (error) {
        throw networkError(error);
      }
    };
    let response = await attempt();
    const code = response.status === 401 ? await response.clone().json().then((body) => body.error, () => "") : "";
    if (response.status === 401 && this.stored && !NOT_THE_TOKEN.includes(code)) {
      try {
        await this.refresh();
      } catch {
        /* a refresh that ends the session has cleared it and said SIGNED_OUT */
      }
      if (this.stored) response = await attempt();
    }
    return response;
  }

  // -- internals ---------------------------------------------------------------------------

  private initial(listener: AuthListener): void {
    if (this.listeners.get(listener) === false) {
      this.listeners.set(listener, true);
      listener("INITIAL_SESSION", this.session);
    }
  }

  private emit(event: AuthEvent): void {
    for (const listener of [...this.listeners.keys()]) {
      try {
        listener(event, this.session);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  }

  private async call<T>(method: string, path: string, body?: unknown, withToken = true): Promise<T> {
    let response = await this.request(method, path, body, withToken);
    if (response.status === 403) {
      const refusal = await errorOf(response);
      if (refusal.error !== "challenge_required") throw refusal;
      response = await this.request(method, path, body, withToken, await this.prove(refusal)); // once
    }
    if (!response.ok) throw await errorOf(response);
    return response.status === 204 ? (null as T) : response.json();
  }

  private async request(method: string, path: string, body: unknown, withToken: boolean, proof?: string | null) {
    const headers: Record<string, string> = body === undefined ? {} : { "Content-Type": "application/json" };
    if (proof) headers["X-Usher-Challenge"] = proof;
    const init: RequestInit = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
    if (withToken) return this.fetch(path, init);
    headers["X-Publishable-Key"] = this.options.publishableKey;
    try {
      return await this.send(this.base + path, init);
    } catch (error) {
      throw networkError(error);
    }
  }

  /** A proof for the mode's bot defense: ALTCHA solved here, a captcha's token from the page. */
  private async prove(refusal: UsherError): Promise<string | null> {
    const asked = await this.call<Schemas["ChallengeOut"]>("GET", "/auth/challenge", undefined, false);
    if (asked.provider === "off") return null; // switched off meanwhile: no proof needed
    if (asked.provider === "altcha" && asked.challenge) return solveAltcha(asked.challenge);
    const page = this.options.getChallengeToken;
    if (page && asked.siteKey) return page(asked.provider, asked.siteKey);
    throw refusal;
  }

  private async signIn(path: string, body: unknown, upgrade: boolean): Promise<Session> {
    const tokens = await this.call<SessionTokens>("POST", path, body, upgrade);
    await this.write(record(tokens, tokens.session));
    return tokens.session;
  }

  /** Seconds the access token has left, judged from when it was received (never `exp` against this clock). */
  private left(stored: Stored): number {
    const elapsed = Date.now() - stored.receivedAt;
    return elapsed < 0 ? 0 : stored.lifetime - elapsed / 1000; // the clock went back: treat as expired
  }

  /** The margin, never more than half a token's life (a short-lived token must not refresh in a loop). */
  private marginOf(stored: Stored): number {
    return Math.min(this.margin, stored.lifetime / 2);
  }

  private async read(): Promise<Stored | null> {
    try {
      const text = await this.storage.getItem(this.key);
      const stored = text ? (JSON.parse(text) as Stored) : null;
      return stored && stored.refreshToken && stored.session ? stored : null;
    } catch {
      return null;
    }
  }

  /** Take `stored` as this tab's state and emit what changed. */
  private adopt(stored: Stored | null, announce = false): void {
    const before = this.stored;
    this.stored = stored;
    this.session = stored ? stored.session : null;
    this.schedule();
    if (!announce) return;
    if (!stored) before && this.emit("SIGNED_OUT");
    else if (!before || before.session.sessionId !== stored.session.sessionId) this.emit("SIGNED_IN");
    else if (before.refreshToken !== stored.refreshToken) this.emit("TOKEN_REFRESHED");
  }

  /** Store (or clear) the record, tell the other tabs, emit. */
  private async write(stored: Stored | null): Promise<void> {
    try {
      if (stored) await this.storage.setItem(this.key, JSON.stringify(stored));
      else await this.storage.removeItem(this.key);
    } catch {
      /* full or blocked storage: this tab still works */
    }
    this.channel?.postMessage(1);
    this.adopt(stored, true);
  }

  /** Another tab changed storage: follow it. */
  private async sync(): Promise<void> {
    const stored = await this.read();
    if (stored?.refreshToken !== this.stored?.refreshToken) this.adopt(stored, true);
  }

  /** Timers are not trusted: on wake-up (and when asked), refresh if within the margin or expired. */
  private async wake(): Promise<void> {
    await this.sync();
    const stored = this.stored;
    if (stored && this.left(stored) <= this.marginOf(stored)) await this.refresh().catch(() => undefined);
  }

  private schedule(delay?: number): void {
    clearTimeout(this.timer);
    const stored = this.stored;
    if (!this.auto || !stored) return;
    const wait = delay ?? this.left(stored) - this.marginOf(stored);
    this.timer = setTimeout(() => void this.wake(), Math.min(MAX_DELAY, Math.max(0, wait * 1000)));
  }

  private async rotate(): Promise<Session> {
    const mine = this.stored;
    await this.sync(); // another tab's newer pair (or its sign-out) wins over ours
    const used = this.stored;
    if (!used) throw new UsherError("no_session", "There is no session to refresh.", 401);
    if (mine && used.refreshToken !== mine.refreshToken && this.left(used) > this.marginOf(used)) return used.session;
    let pair: Schemas["TokenPair"];
    try {
      pair = await this.call("POST", "/auth/refresh", { refreshToken: used.refreshToken }, false);
    } catch (error) {
      const current = await this.read();
      if (current && current.refreshToken !== used.refreshToken) {
        this.adopt(current, true); // another tab rotated first: its pair is the live one
        return current.session;
      }
      if (error instanceof UsherError && ENDS_SESSION.includes(error.error)) await this.write(null);
      else {
        this.failures++; // network, 429, 503: keep the session and try again later
        const retry = error instanceof UsherError && error.retryAfter;
        this.schedule(retry || Math.min(2 ** this.failures, 60) * (0.75 + Math.random() / 2));
      }
      throw error;
    }
    this.failures = 0;
    const current = await this.read();
    if (!current || current.session.sessionId !== used.session.sessionId) {
      this.adopt(current, true); // signed out or in again elsewhere meanwhile: that wins
      if (!current) throw new UsherError("no_session", "The session ended in another tab.", 401);
      return current.session;
    }
    // `expiresAt` as the server wrote it (its clock): for display; expiry is judged by `lifetime`.
    const session = { ...used.session, expiresAt: new Date(claimsOf(pair.accessToken).exp * 1000).toISOString().replace(".000Z", "Z") };
    await this.write(record(pair, session));
    return session;
  }

  private watch(id: string, onState: (state: QueueState) => void, options: WatchOptions = {}): () => void {
    const interval = options.interval ?? 5;
    let stopped = false;
    let failures = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = () => {
      stopped = true;
      clearTimeout(timer);
      unsubscribe();
    };
    const unsubscribe = this.onAuthStateChange((event) => event === "SIGNED_OUT" && stop());
    const poll = async () => {
      if (stopped) return;
      if (!this.stored) return stop();
      let wait = interval;
      try {
        const state = await this.queues.status(id);
        if (stopped) return;
        failures = 0;
        onState(state);
        if (typeof state.pollAfter === "number" && state.pollAfter > 0) wait = state.pollAfter;
      } catch (error) {
        if (stopped || !this.stored || !(error instanceof UsherError)) return stop();
        failures++;
        options.onError?.(error);
        if ((error.status === 429 || error.status === 503) && error.retryAfter !== null) wait = error.retryAfter;
        else wait = Math.min(interval * 2 ** failures, 300) * (0.75 + Math.random() / 2);
      }
      if (!stopped) timer = setTimeout(poll, wait * 1000);
    };
    void this.ready.then(poll);
    return stop;
  }
}
