// env.VECTORIZE under vitest-pool-workers, against `vcli serve` (tests/test_workers_binding.py
// writes vitest.config.mjs with `vcli workers-config --only vitest`, and cases.json: each binding
// call with what `vcli … --json` and the REST API say about the same index).
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import cases from "../cases.json";
import { call } from "../src/calls.mjs";
import { close } from "./close.mjs";

describe("env.VECTORIZE", () => {
  for (const { name, request, expected } of cases) {
    it(name, async () => close(await call(env, request), expected, name));
  }
});

describe("SELF.fetch", () => {
  it("runs the launch post's example inside the Worker", async () => {
    const response = await SELF.fetch("http://worker/launch-post", {
      method: "POST", body: JSON.stringify({ binding: "LAUNCH" }),
    });
    const { result } = await response.json();
    const scores = result.matches.matches.map(({ id, score }) => [id, Number(score.toFixed(6))]);
    expect(scores).toEqual([["5", 0.999909], ["4", 0.789848], ["2", 0.611976]]);
  });
});
