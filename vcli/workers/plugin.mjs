// vcli's Miniflare plugin: a Worker's Vectorize binding answered by `vcli serve`.
//
// wrangler (`wrangler dev`, `getPlatformProxy()`), vitest's Workers pool and plain Miniflare load
// this file for a binding declared under `unsafe.bindings` with `"dev": {"plugin": {"package":
// "<this file>", "name": "vcli"}, "options": {"url": "http://127.0.0.1:8787/binding/<index>/"}}`
// (`vcli workers-config` writes it). The binding is the one Miniflare's own Vectorize plugin gives:
// workerd's module `cloudflare-internal:vectorize-api`, the same code as in production, around a
// `fetcher` service. Here that service is a small Worker that sends each of the binding's
// requests, `http://vector-search/<endpoint>`, to `<url><endpoint>` (the URL's query, e.g.
// `?token=…`, kept).
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

// -- Vectorize ------------------------------------------------------------------------------------

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

// One forwarding Worker per index URL, whichever Worker or binding name uses it.
const vectorizeService = (url) => `vcli-vectorize:${url}`;

const VECTORIZE = "vcli"; // the plugin's name in wrangler configs (vcli.workers.PLUGIN_NAME)

const vectorize = externalPlugin(VECTORIZE, {
  check({ name, options = {} }) {
    if (typeof options.url !== "string" || !/^https?:\/\//.test(options.url)) {
      throw new Error(`vcli's Vectorize plugin: binding ${name} needs "dev": {"options": {"url": ` +
        `"http://127.0.0.1:8787/binding/<index>/"}} (the URL of vcli serve's binding for its index)`);
    }
    if (typeof options.index_name !== "string" || options.index_name === "") {
      throw new Error(`vcli's Vectorize plugin: binding ${name} needs "index_name"`);
    }
    return { name, url: options.url, index: options.index_name };
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
  service: ({ url }) => ({
    name: vectorizeService(url),
    worker: {
      compatibilityDate: "2025-01-01",
      modules: [{ name: "forward.mjs", esModule: forwarder(url) }],
    },
  }),
});

export const plugins = { [VECTORIZE]: vectorize };
