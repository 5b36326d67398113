// Builds dist/ (embedded by embed.go) from src/ and static/:
//   node build.mjs [outdir]
// The output is deterministic, so embed_test.go can check that the
// committed dist/ matches the sources.
import * as esbuild from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? join(here, "dist");
const target = ["es2022", "chrome105", "firefox110", "safari16"];

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await esbuild.build({
  entryPoints: [join(here, "src/main.ts")],
  outfile: join(out, "app.js"),
  bundle: true,
  format: "esm",
  minify: true,
  target,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
});
await esbuild.build({
  entryPoints: [join(here, "static/app.css")],
  outfile: join(out, "app.css"),
  minify: true,
  target,
  charset: "utf8",
  logLevel: "warning",
});
for (const f of ["index.html", "favicon.svg"]) await copyFile(join(here, "static", f), join(out, f));
