// Builds dist/: the ES module (react and @usher/js stay imports: peers) and its .d.ts.
// Needs ../js built first (its types): `make sdk` builds both in order.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { build } from "esbuild";

const { version } = JSON.parse(readFileSync("package.json", "utf8"));
await build({
  entryPoints: ["src/index.ts"], bundle: true, minify: true, format: "esm", target: "es2020", logLevel: "warning",
  external: ["react", "@usher/js"], outfile: "dist/usher-react.js", legalComments: "none",
  banner: { js: `/* @usher/react ${version} (Apache-2.0): built from clients/react */` },
});
execFileSync("node_modules/.bin/tsc", ["-p", "."], { stdio: "inherit" });
