// A minimal shop on @usher/js only: no hand-written request. Guest → queue → code → signed in,
// across reloads and tabs. Loaded as a module from the shop's own origin; the SDK comes from
// Usher (`script-src 'self' <usher>`), and the page needs no inline script or style.
const setting = (name) => document.querySelector(`meta[name="usher-${name}"]`).content;
const baseUrl = setting("base-url");
const queueId = setting("queue");
const { Usher, UsherError } = await import(`${baseUrl}/sdk/v1/usher.js`);

const usher = new Usher({ publishableKey: setting("publishable-key"), baseUrl });
window.usher = usher; // for the console (and the tests)

const $ = (id) => document.getElementById(id);
const say = (text) => ($("message").textContent = text);
let stopWatching = null;

function show(session) {
  $("session").textContent = session
    ? `${session.type} ${session.consumerId} (${session.sessionId})${session.type !== "guest" && session.guestId ? `, upgraded from ${session.guestId}` : ""}`
    : "signed out";
  document.body.dataset.session = session ? session.sessionId : "";
  $("guest").disabled = Boolean(session);
  for (const id of ["enter", "leave", "sign-out", "sign-out-everywhere"]) $(id).disabled = !session;
  for (const button of document.querySelectorAll("form button")) button.disabled = false;
}

function watchQueue() {
  stopWatching?.();
  stopWatching = null;
  if (!usher.session) return void ($("queue").textContent = "not in the queue");
  stopWatching = usher.queues.watch(queueId, (state) => {
    $("queue").textContent = state.status === "QUEUED" ? `QUEUED, position ${state.position}` : state.status;
  }, {
    interval: Number(setting("poll-interval")),
    onError: (error) => error.error === "not_found" && ($("queue").textContent = "not in the queue"),
  });
}

usher.onAuthStateChange((event, session) => {
  const item = document.createElement("li");
  item.textContent = event;
  $("events").append(item);
  show(session);
  if (event !== "TOKEN_REFRESHED") watchQueue();
});

async function act(work) {
  try {
    say(await work());
  } catch (error) {
    say(error instanceof UsherError ? `${error.error}: ${error.message}` : String(error));
  }
}

$("guest").addEventListener("click", () => act(async () => {
  await usher.signInAsGuest();
  return "Welcome, guest.";
}));
$("enter").addEventListener("click", () => act(async () => {
  const state = await usher.queues.enter(queueId);
  $("queue").textContent = `QUEUED, position ${state.position}`;
  return "You are in the queue.";
}));
$("leave").addEventListener("click", () => act(async () => {
  $("queue").textContent = (await usher.queues.leave(queueId)).status;
  return "You left the queue.";
}));
$("request-code").addEventListener("submit", (event) => {
  event.preventDefault();
  act(async () => {
    await usher.requestCode({ email: $("email").value });
    return "Check your email for the code.";
  });
});
$("verify-code").addEventListener("submit", (event) => {
  event.preventDefault();
  act(async () => {
    await usher.verifyCode({ email: $("email").value, code: $("code").value });
    return "Signed in. Your place in the queue came with you.";
  });
});
$("sign-out").addEventListener("click", () => act(async () => {
  await usher.signOut();
  return "Signed out.";
}));
$("sign-out-everywhere").addEventListener("click", () => act(async () => {
  await usher.signOut({ scope: "global" });
  return "Signed out on every device.";
}));

await usher.ready;
document.body.dataset.ready = "true";
