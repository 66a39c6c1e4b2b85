// A Worker whose routes call its Vectorize and AI bindings, for tests/test_workers_binding.py and
// tests/test_workers_ai.py.
//   POST /call         {"binding"?, "method", "args", "f32"?}  one binding call; its result or error
//   POST /launch-post  the launch post's example: upsert five vectors, query [54.8, 5.5, 3.1]
//   POST /load         {"calls", "parallel"}  many calls, reads and writes mixed; failures and timings
//   POST /read-your-writes {"id", "values"}  upsert, poll describe() for its mutation, read it back
//   POST /ai           {"model", "inputs", "options"?, "query"?}  env.AI.run, then a query with it
// Every answer is 200 with {"result"} or {"error": {"message", "cause"}}, so the caller sees
// exactly what the Worker saw.
import { ai, call, launchPost, load, readYourWrites } from "./calls.mjs";

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    const body = request.method === "POST" ? await request.json() : {};
    if (pathname === "/call") return Response.json(await call(env, body));
    if (pathname === "/ai") return Response.json(await ai(env, body));
    if (pathname === "/launch-post") return Response.json(await launchPost(env[body.binding ?? "VECTORIZE"]));
    if (pathname === "/load") return Response.json(await load(env[body.binding ?? "VECTORIZE"], body));
    if (pathname === "/read-your-writes") {
      return Response.json(await readYourWrites(env[body.binding ?? "VECTORIZE"], body));
    }
    return new Response("not found", { status: 404 });
  },
};
