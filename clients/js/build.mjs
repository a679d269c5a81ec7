// Builds dist/: the npm package (ES module + .d.ts) and the classic-script build.
// `node build.mjs --install` also copies the two served files to app/sdk/, where Usher serves
// them (`make sdk`); tests/test_sdk_js.py fails when those differ from a fresh build.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { build } from "esbuild";

const { version } = JSON.parse(readFileSync("package.json", "utf8"));
const common = {
  bundle: true, minify: true, target: "es2020", legalComments: "none", logLevel: "warning",
  banner: { js: `/* @usher/js ${version} (Apache-2.0): built from clients/js by \`make sdk\` */` },
};
mkdirSync("dist", { recursive: true });
await build({ ...common, entryPoints: ["src/index.ts"], format: "esm", outfile: "dist/usher.js" });
await build({ ...common, entryPoints: ["src/global.ts"], format: "iife", outfile: "dist/usher.global.js" });
execFileSync("node_modules/.bin/tsc", ["-p", "."], { stdio: "inherit" }); // strict type check + index.d.ts
copyFileSync("src/openapi.d.ts", "dist/openapi.d.ts");
if (process.argv.includes("--install")) {
  mkdirSync("../../app/sdk", { recursive: true });
  for (const name of ["usher.js", "usher.global.js"]) copyFileSync(`dist/${name}`, `../../app/sdk/${name}`);
}
