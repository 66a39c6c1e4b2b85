// vcli's Miniflare plugins: a Worker's Vectorize bindings and its AI binding answered by `vcli serve`.
//
// wrangler (`wrangler dev`, `getPlatformProxy()`), vitest's Workers pool and plain Miniflare load
// this file for a binding declared under `unsafe.bindings` with `"dev": {"plugin": {"package":
// "<this file>", "name": "vcli" | "vcli-ai"}, "options": {"url": …}}` (`vcli workers-config`
// writes it). Each binding is the one Miniflare's own plugin of that kind gives: workerd's module
// (`cloudflare-internal:vectorize-api`, `cloudflare-internal:ai-api`), the same code as in
// production, around a `fetcher` service. Here that service is a small Worker that sends each of
// the binding's requests to `url` with the request's path appended (the URL's query, e.g.
// `?token=…`, kept beside the request's own).
//
// Miniflare 4 and Miniflare 5 call a plugin differently (`ourBindings` reads both); each kind of
// binding vcli answers is one entry of `plugins`, made by `externalPlugin`.
import { createRequire } from "node:module";
import path from "node:path";

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
  throw new Error(`vcli's Miniflare plugin: cannot find the package "miniflare" from ${bases.join(", ")}`);
}

// The bindings of the plugin `plugin` a Worker has, as [{name, options}], from what Miniflare
// passes: Miniflare 4 gives that list itself (or nothing); Miniflare 5 gives the Worker's options,
// every binding in `config.env` as {NAME: {type: "unsafe:<type>", dev: {plugin: {package, name},
// options}}}, and calls every plugin for every Worker, ours or not.
function ourBindings(plugin, given) {
  if (given === undefined || given === null) return [];
  if (Array.isArray(given)) return given;
  return Object.entries(given.config?.env ?? {})
    .filter(([, b]) => typeof b?.type === "string" && b.type.startsWith("unsafe:") && b.dev?.plugin?.name === plugin)
    .map(([name, b]) => ({ name, options: b.dev.options ?? {} }));
}

// A Miniflare external plugin named `plugin`: `check` turns one binding's {name, options} into
// what the other two need (throwing a clear error on bad options); `binding` gives its workerd
// binding; `service` the service the binding reaches (services of the same name are made once).
function externalPlugin(plugin, { check, binding, service }) {
  const ours = (given) => ourBindings(plugin, given).map(check);
  return {
    options: {}, // Miniflare 4 passes an external plugin its unsafe bindings unparsed
    async getBindings(given) {
      return ours(given).map(binding);
    },
    getNodeBindings(given) {
      const bindings = ourBindings(plugin, given);
      if (bindings.length === 0) return {};
      const ProxyNodeBinding = proxyNodeBinding();
      return Object.fromEntries(bindings.map(({ name }) => [name, new ProxyNodeBinding()]));
    },
    async getServices({ options } = {}) {
      const services = new Map(ours(options).map(service).map((s) => [s.name, s]));
      return [...services.values()];
    },
  };
}

// The code of the Worker that forwards a binding's requests, `http://<any host>/<path>?<query>`,
// to `<url><path>` with the URL's query and the request's.
function forwarder(url) {
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

// The forwarding Worker named `name`, for `url` (one per URL, whichever Worker or binding uses it).
function forwardingService(name, url) {
  return {
    name,
    worker: {
      compatibilityDate: "2025-01-01",
      modules: [{ name: "forward.mjs", esModule: forwarder(url) }],
    },
  };
}

// A binding's `url` option, checked: an http(s) URL (`example` in the error otherwise).
function urlOption({ name, options = {} }, plugin, example) {
  if (typeof options.url !== "string" || !/^https?:\/\//.test(options.url)) {
    throw new Error(`vcli's ${plugin} plugin: binding ${name} needs "dev": {"options": {"url": ` +
      `"${example}"}} (the URL where vcli serve answers it)`);
  }
  return options.url;
}

// -- Vectorize ------------------------------------------------------------------------------------

const VECTORIZE = "vcli"; // the plugin's name in wrangler configs (vcli.workers.PLUGIN_NAME)
const vectorizeService = (url) => `vcli-vectorize:${url}`;

const vectorize = externalPlugin(VECTORIZE, {
  check(binding) {
    const url = urlOption(binding, "Vectorize", "http://127.0.0.1:8787/binding/<index>/");
    const index = binding.options?.index_name;
    if (typeof index !== "string" || index === "") {
      throw new Error(`vcli's Vectorize plugin: binding ${binding.name} needs "index_name"`);
    }
    return { name: binding.name, url, index };
  },
  binding: ({ name, url, index }) => ({
    name,
    wrapped: {
      moduleName: "cloudflare-internal:vectorize-api",
      innerBindings: [
        { name: "fetcher", service: { name: vectorizeService(url) } },
        { name: "indexId", text: index },
        { name: "indexVersion", text: "v2" },
        { name: "useNdJson", json: true },
      ],
    },
  }),
  service: ({ url }) => forwardingService(vectorizeService(url), url),
});

// -- Workers AI -----------------------------------------------------------------------------------
// A wrangler config's `"ai": {"binding": "AI"}` becomes this plugin's binding in the local
// environment. `env.AI.run(model, inputs, options)` is one `POST
// http://workers-binding.ai/run?version=3` to the fetcher, sent on to `<url>run?version=3`.

const AI = "vcli-ai"; // vcli.workers.AI_PLUGIN_NAME
const aiService = (url) => `vcli-ai:${url}`;

const ai = externalPlugin(AI, {
  check: (binding) => ({ name: binding.name, url: urlOption(binding, "AI", "http://127.0.0.1:8787/ai/") }),
  binding: ({ name, url }) => ({
    name,
    wrapped: {
      moduleName: "cloudflare-internal:ai-api",
      innerBindings: [{ name: "fetcher", service: { name: aiService(url) } }],
    },
  }),
  service: ({ url }) => forwardingService(aiService(url), url),
});

export const plugins = { [VECTORIZE]: vectorize, [AI]: ai };
