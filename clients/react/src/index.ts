/**
 * @usher/react: React bindings of @usher/js. One `Usher` per app, given to `UsherProvider`;
 * components read it with `useUsher()`, the session with `useSession()` (re-rendered on every
 * auth event, from any tab) and a queue place with `useQueue(queueId)` (watched while signed in).
 */
import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from "react";
import type { QueueState, Session, Usher, UsherError, WatchOptions } from "@usher/js";

const UsherContext = createContext<Usher | null>(null);

export interface UsherProviderProps {
  usher: Usher;
  children?: ReactNode;
}

export function UsherProvider({ usher, children }: UsherProviderProps) {
  return createElement(UsherContext.Provider, { value: usher }, children);
}

/** The `Usher` given to the nearest `UsherProvider`. */
export function useUsher(): Usher {
  const usher = useContext(UsherContext);
  if (!usher) throw new Error("useUsher() needs an <UsherProvider usher={…}> above it.");
  return usher;
}

export interface SessionState {
  /** The current session, or null. */
  session: Session | null;
  /** False until the stored session has been restored (`usher.ready`). */
  ready: boolean;
}

/** The session, kept current by `onAuthStateChange` (sign-in, refresh, sign-out, other tabs). */
export function useSession(): SessionState {
  const usher = useUsher();
  const session = useSyncExternalStore(
    useCallback((onChange: () => void) => usher.onAuthStateChange(onChange), [usher]),
    () => usher.session,
    () => null,
  );
  const [ready, setReady] = useState(false);
  useEffect(() => {
    let live = true;
    void usher.ready.then(() => live && setReady(true));
    return () => void (live = false);
  }, [usher]);
  return { session, ready };
}

export interface QueueHook {
  /** The last state the queue answered, or null. */
  state: QueueState | null;
  /** The last error of a poll or an action, cleared by the next success. */
  error: UsherError | null;
  enter(): Promise<QueueState>;
  leave(): Promise<QueueState>;
}

/** A queue place: `usher.queues.watch` while there is a session, with `enter` and `leave`. */
export function useQueue(queueId: string, options: Pick<WatchOptions, "interval"> = {}): QueueHook {
  const usher = useUsher();
  const { session } = useSession();
  const [state, setState] = useState<QueueState | null>(null);
  const [error, setError] = useState<UsherError | null>(null);
  const sessionId = session?.sessionId;
  const interval = options.interval;
  useEffect(() => {
    if (!sessionId) return setState(null);
    return usher.queues.watch(
      queueId,
      (next) => {
        setState(next);
        setError(null);
      },
      { interval, onError: setError },
    );
  }, [usher, queueId, sessionId, interval]);
  const act = useCallback(
    (action: "enter" | "leave") => async () => {
      try {
        const next = await usher.queues[action](queueId);
        setState(next);
        setError(null);
        return next;
      } catch (caught) {
        setError(caught as UsherError);
        throw caught;
      }
    },
    [usher, queueId],
  );
  return { state, error, enter: act("enter"), leave: act("leave") };
}
