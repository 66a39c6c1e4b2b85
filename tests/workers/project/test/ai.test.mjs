// env.AI (Workers AI) under vitest, against `vcli serve`. tests/test_workers_binding.py's vitest
// runs write vitest.config.mjs with `vcli workers-config --only vitest`, and ai-cases.json (from
// tests/test_workers_ai.py): each env.AI.run call, some followed by a query of env.DOCS with the
// embedding, with what vcli says for the same texts.
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import cases from "../ai-cases.json";
import { ai } from "../src/calls.mjs";
import { close } from "./close.mjs";

describe("env.AI", () => {
  for (const { name, request, expected } of cases) {
    it(name, async () => close(await ai(env, request), expected, name));
  }
});

describe("SELF.fetch", () => {
  it("embeds a question and queries the index with it inside the Worker", async () => {
    const [{ request, expected }] = cases;
    const response = await SELF.fetch("http://worker/ai", { method: "POST", body: JSON.stringify(request) });
    expect(response.status).toBe(200);
    close(await response.json(), expected, "SELF /ai");
  });
});
