// vcli's Miniflare plugin: a Worker's Vectorize binding answered by `vcli serve`.
//
// wrangler (`wrangler dev`, `getPlatformProxy()`) loads this file for a binding declared under
// `unsafe.bindings` with `"dev": {"plugin": {"package": "<this file>", "name": "vcli"},
// "options": {"url": "http://127.0.0.1:8787/binding/<index>/"}}` (`vcli workers-config` writes
// it). The binding is the one Miniflare's own Vectorize plugin gives: workerd's module
// `cloudflare-internal:vectorize-api`, the same code as in production, around a `fetcher`
// service. Here that service is a small Worker that sends each of the binding's requests,
// `http://vector-search/<endpoint>`, to `<url><endpoint>` (the URL's query, e.g. `?token=…`, kept).
import { createRequire } from "node:module";
import path from "node:path";

const NAME = "vcli";

// Node-side bindings (getPlatformProxy) must be instances of the running Miniflare's own
// ProxyNodeBinding class, so it is taken from the Miniflare already loaded (wrangler requires it),
// else from the one the project or the running script would load.
function proxyNodeBinding() {
  const require = createRequire(import.meta.url);
  const loaded = Object.keys(require.cache).find((file) =>
    /[\\/]miniflare[\\/]dist[\\/]src[\\/]index\.js$/.test(file));
  if (loaded) return require(loaded).ProxyNodeBinding;
  const bases = [process.cwd(), process.argv[1] && path.dirname(process.argv[1])].filter(Boolean);
  for (const base of bases) {
    try {
      return createRequire(path.join(base, "noop.js"))("miniflare").ProxyNodeBinding;
    } catch {
      // try the next place
    }
  }
  throw new Error(`vcli's Vectorize plugin: cannot find the package "miniflare" from ${bases.join(", ")}`);
}

function forwarder(url) {
  return `
const BASE = new URL(${JSON.stringify(url)});
export default {
  async fetch(request) {
    const target = new URL(BASE);
    const endpoint = new URL(request.url).pathname.replace(/^\\/+/, "");
    target.pathname = BASE.pathname.replace(/\\/?$/, "/") + endpoint;
    return fetch(new Request(target, request));
  },
};`;
}

function check(binding) {
  const { name, options = {} } = binding;
  if (typeof options.url !== "string" || !/^https?:\/\//.test(options.url)) {
    throw new Error(`vcli's Vectorize plugin: binding ${name} needs "dev": {"options": {"url": ` +
      `"http://127.0.0.1:8787/binding/<index>/"}} (the URL of vcli serve's binding for its index)`);
  }
  if (typeof options.index_name !== "string" || options.index_name === "") {
    throw new Error(`vcli's Vectorize plugin: binding ${name} needs "index_name"`);
  }
  return { name, url: options.url, index: options.index_name };
}

const serviceName = (name) => `vcli-vectorize:${name}`;

export const plugins = {
  [NAME]: {
    options: {}, // Miniflare passes an external plugin its unsafe bindings unparsed
    async getBindings(bindings = []) {
      return bindings.map(check).map(({ name, index }) => ({
        name,
        wrapped: {
          moduleName: "cloudflare-internal:vectorize-api",
          innerBindings: [
            { name: "fetcher", service: { name: serviceName(name) } },
            { name: "indexId", text: index },
            { name: "indexVersion", text: "v2" },
            { name: "useNdJson", json: true },
          ],
        },
      }));
    },
    getNodeBindings(bindings = []) {
      if (bindings.length === 0) return {};
      const ProxyNodeBinding = proxyNodeBinding();
      return Object.fromEntries(bindings.map(({ name }) => [name, new ProxyNodeBinding()]));
    },
    async getServices({ options: bindings = [] }) {
      return bindings.map(check).map(({ name, url }) => ({
        name: serviceName(name),
        worker: {
          compatibilityDate: "2025-01-01",
          modules: [{ name: "forward.mjs", esModule: forwarder(url) }],
        },
      }));
    },
  },
};

// ---- vcli's AI plugin: a Worker's env.AI (Workers AI) answered by `vcli serve` ----------------
//
// Declared under `unsafe.bindings` with `"dev": {"plugin": {"package": "<this file>", "name":
// "vcli-ai"}, "options": {"url": "http://127.0.0.1:8787/ai/"}}` (`vcli workers-config` writes it
// for a wrangler config's `"ai": {"binding": "AI"}`). The binding is the one Miniflare's own AI
// plugin gives: workerd's `cloudflare-internal:ai-api` around a `fetcher` service, here a Worker
// that sends `http://workers-binding.ai/run?version=3` to `<url>run?version=3` (the URL's own
// query, e.g. `?token=…`, kept beside the request's).
//
// Miniflare 4 hands an external plugin its bindings as an array of `{name, options}`; Miniflare 5
// hands it the Worker's options, with the bindings in `config.env` as
// `{NAME: {type: "unsafe:<type>", dev: {plugin: {package, name}, options}}}`. `ownBindings` reads
// either.
const AI_NAME = "vcli-ai";

export function ownBindings(given, pluginName) {
  if (Array.isArray(given)) return given;
  const env = given?.config?.env ?? {};
  return Object.entries(env)
    .filter(([, b]) => b?.dev?.plugin?.name === pluginName)
    .map(([name, b]) => ({ name, options: { ...b.dev.options } }));
}

function aiForwarder(url) {
  return `
const BASE = new URL(${JSON.stringify(url)});
export default {
  async fetch(request) {
    const asked = new URL(request.url);
    const target = new URL(BASE);
    target.pathname = BASE.pathname.replace(/\\/?$/, "/") + asked.pathname.replace(/^\\/+/, "");
    for (const [key, value] of asked.searchParams) target.searchParams.append(key, value);
    return fetch(new Request(target, request));
  },
};`;
}

function checkAi({ name, options = {} }) {
  if (typeof options.url !== "string" || !/^https?:\/\//.test(options.url)) {
    throw new Error(`vcli's AI plugin: binding ${name} needs "dev": {"options": {"url": ` +
      `"http://127.0.0.1:8787/ai/"}} (the URL of vcli serve's AI binding)`);
  }
  return { name, url: options.url };
}

const aiServiceName = (name) => `vcli-ai:${name}`;

plugins[AI_NAME] = {
  options: {},
  async getBindings(given) {
    return ownBindings(given ?? [], AI_NAME).map(checkAi).map(({ name }) => ({
      name,
      wrapped: {
        moduleName: "cloudflare-internal:ai-api",
        innerBindings: [{ name: "fetcher", service: { name: aiServiceName(name) } }],
      },
    }));
  },
  getNodeBindings(given) {
    const bindings = ownBindings(given ?? [], AI_NAME);
    if (bindings.length === 0) return {};
    const ProxyNodeBinding = proxyNodeBinding();
    return Object.fromEntries(bindings.map(({ name }) => [name, new ProxyNodeBinding()]));
  },
  async getServices({ options }) {
    return ownBindings(options ?? [], AI_NAME).map(checkAi).map(({ name, url }) => ({
      name: aiServiceName(name),
      worker: {
        compatibilityDate: "2025-01-01",
        modules: [{ name: "forward.mjs", esModule: aiForwarder(url) }],
      },
    }));
  },
};
// ---- end of vcli's AI plugin --------------------------------------------------------------------
