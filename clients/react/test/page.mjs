// The Chromium test page of the hooks (tests/test_sdk_browser.py bundles it with esbuild).
import { createElement as h } from "react";
import { createRoot } from "react-dom/client";
import { Usher } from "../../js/dist/usher.js";
import { UsherProvider, useQueue, useSession, useUsher } from "../dist/usher-react.js";

const setting = (name) => document.querySelector(`meta[name="usher-${name}"]`).content;
const queueId = setting("queue");

function App() {
  const usher = useUsher();
  const { session, ready } = useSession();
  const queue = useQueue(queueId, { interval: 1 });
  return h("main", null,
    h("p", { id: "session" }, !ready ? "restoring" : session ? `${session.type} ${session.sessionId}` : "signed out"),
    h("p", { id: "queue" }, queue.state ? `${queue.state.status} ${queue.state.position}` : "none"),
    h("button", { id: "guest", onClick: () => usher.signInAsGuest() }, "Continue as guest"),
    h("button", { id: "enter", onClick: () => queue.enter() }, "Join the queue"),
    h("button", { id: "leave", onClick: () => queue.leave() }, "Leave the queue"),
    h("button", { id: "sign-out", onClick: () => usher.signOut() }, "Sign out"));
}

const usher = new Usher({ publishableKey: setting("publishable-key"), baseUrl: setting("base-url") });
window.usher = usher;
createRoot(document.getElementById("root")).render(h(UsherProvider, { usher }, h(App)));
