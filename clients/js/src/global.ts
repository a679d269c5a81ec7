/** The classic-script build: `window.Usher` is the class, `Usher.UsherError` the error type. */
import { Usher, UsherError } from "./index";

(globalThis as unknown as { Usher: typeof Usher }).Usher = Object.assign(Usher, { UsherError });
