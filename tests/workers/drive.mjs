// Runs the test Worker's calls in a local Workers runtime and prints what the Worker saw, as JSON.
//   node drive.mjs miniflare <project>                 plain Miniflare, the bindings of
//                                                     <project>/vectorize.local.mjs (route 1)
//   node drive.mjs platform-proxy <project> <config> <env>
//                                                     getPlatformProxy() with vcli's plugin (route 2)
// stdin: a JSON list of requests {"path": "/call" | "/launch-post" | "/load" | "/ai", "body": {...}};
// stdout: a JSON list of their answers ({"result"} or {"error"}), in order.
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [mode, project, configPath, environment] = process.argv.slice(2);
const requests = JSON.parse(readFileSync(0, "utf8"));
const answers = [];

if (mode === "miniflare") {
  const { Miniflare } = await import("miniflare");
  const { vectorize, ai } = await import(pathToFileURL(path.join(project, "vectorize.local.mjs")).href);
  const mf = new Miniflare({
    modules: true,
    scriptPath: path.join(project, "src", "index.mjs"),
    compatibilityDate: "2025-01-01",
    vectorize,
    ai,
  });
  try {
    for (const { path: route, body } of requests) {
      const response = await mf.dispatchFetch(`http://worker${route}`, { method: "POST", body: JSON.stringify(body ?? {}) });
      answers.push(await response.json());
    }
  } finally {
    await mf.dispose();
  }
} else if (mode === "platform-proxy") {
  const { getPlatformProxy } = await import("wrangler");
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
