// Runs the test Worker's calls in a local Workers runtime and prints what the Worker saw, as JSON.
//   node drive.mjs miniflare <project>                 plain Miniflare, the bindings of
//                                                     <project>/vectorize.local.mjs: `vectorize`
//                                                     and `ai` (Miniflare 4, route 1) or `unsafeBindings`
//                                                     (vcli's plugin; Miniflare 5 converts them)
//   node drive.mjs platform-proxy <project> <config> <env>
//                                                     getPlatformProxy() with vcli's plugin (route 2)
// stdin: a JSON list of requests {"path": "/call" | "/launch-post" | "/load" | "/ai", "body": {...}};
// stdout: a JSON list of their answers ({"result"} or {"error"}), in order.
// miniflare and wrangler are the project's own (<project>/node_modules), as in a user's script.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [mode, project, configPath, environment] = process.argv.slice(2);
const require = createRequire(path.join(project, "package.json"));

// The version of the package `name` the project loads, said on stderr ("drive: miniflare 4.…").
function loaded(name) {
  for (let dir = path.dirname(require.resolve(name)); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    try {
      const manifest = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
      if (manifest.name === name) return console.error(`drive: ${name} ${manifest.version}`);
    } catch {
      // not here: one folder up
    }
  }
}
const requests = JSON.parse(readFileSync(0, "utf8"));
const answers = [];

if (mode === "miniflare") {
  const { Miniflare, convertV4MiniflareOptions } = require("miniflare");
  loaded("miniflare");
  const bindings = await import(pathToFileURL(path.join(project, "vectorize.local.mjs")).href);
  // The Worker's modules listed (Miniflare 5's converter does not follow a script's imports)
  const options = {
    modulesRoot: project,
    modules: ["index.mjs", "calls.mjs"].map((name) => ({ type: "ESModule", path: path.join(project, "src", name) })),
    compatibilityDate: "2025-01-01",
    ...bindings,
  };
  const mf = new Miniflare(convertV4MiniflareOptions ? convertV4MiniflareOptions(options) : options);
  try {
    for (const { path: route, body } of requests) {
      const response = await mf.dispatchFetch(`http://worker${route}`, { method: "POST", body: JSON.stringify(body ?? {}) });
      answers.push(await response.json());
    }
  } finally {
    await mf.dispose();
  }
} else if (mode === "platform-proxy") {
  const { getPlatformProxy } = require("wrangler");
  loaded("wrangler");
  const calls = await import(pathToFileURL(path.join(project, "src", "calls.mjs")).href);
  const { env, dispose } = await getPlatformProxy({ configPath, environment, persist: false });
  try {
    for (const { path: route, body = {} } of requests) {
      const index = env[body.binding ?? "VECTORIZE"];
      if (route === "/call") answers.push(await calls.call(env, body));
      else if (route === "/ai") answers.push(await calls.ai(env, body));
      else if (route === "/launch-post") answers.push(await calls.launchPost(index));
      else answers.push(await calls.load(index, body));
    }
  } finally {
    await dispose();
  }
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
process.stdout.write(JSON.stringify(answers));
