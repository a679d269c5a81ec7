// Server-side renders of the hooks (react-dom/server) with a stand-in Usher; the hooks updating
// in a real browser are tested in Chromium (tests/test_sdk_browser.py).
import assert from "node:assert/strict";
import { test } from "node:test";
import { createElement as h } from "react";
import { renderToString } from "react-dom/server";
import { UsherProvider, useQueue, useSession, useUsher } from "../dist/usher-react.js";

function standIn(session) {
  const listeners = new Set();
  return {
    session,
    ready: Promise.resolve(session),
    onAuthStateChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    queues: { watch: () => () => {}, enter: async () => ({}), leave: async () => ({}) },
  };
}

function Status() {
  const { session, ready } = useSession();
  const queue = useQueue("queue_1");
  return h("p", null, `${ready ? "ready" : "restoring"}:${session ? session.sessionId : "signed out"}:${queue.state ?? "none"}`);
}

test("useSession reads the provider's Usher; useQueue starts empty", () => {
  assert.equal(renderToString(h(UsherProvider, { usher: standIn(null) }, h(Status))), "<p>restoring:signed out:none</p>");
  // The server snapshot is null: a server render never shows a browser's session.
  assert.equal(renderToString(h(UsherProvider, { usher: standIn({ sessionId: "sess_1" }) }, h(Status))),
               "<p>restoring:signed out:none</p>");
});

test("useUsher outside a provider says what is missing", () => {
  const Bare = () => h("p", null, String(useUsher()));
  assert.throws(() => renderToString(h(Bare)), /UsherProvider/);
});

test("useUsher returns the provider's instance", () => {
  const usher = standIn(null);
  let seen = null;
  const Probe = () => {
    seen = useUsher();
    return null;
  };
  renderToString(h(UsherProvider, { usher }, h(Probe)));
  assert.equal(seen, usher);
});
