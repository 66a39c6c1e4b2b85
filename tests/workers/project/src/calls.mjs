// Binding calls shared by the Worker, the getPlatformProxy driver and the vitest tests.

// Float32Array values where the call asks for them (a Worker's usual embeddings).
function asArgs({ method, args, f32 }) {
  if (!f32) return args;
  if (method === "query") return [Float32Array.from(args[0]), ...args.slice(1)];
  return [args[0].map((v) => ({ ...v, values: Float32Array.from(v.values) })), ...args.slice(1)];
}

export async function call(env, request) {
  const binding = env[request.binding ?? "VECTORIZE"];
  try {
    return { result: await binding[request.method](...asArgs(request)) };
  } catch (error) {
    return { error: { message: String(error?.message ?? error), cause: error?.cause?.message ?? null } };
  }
}

// env.AI.run(model, inputs, options); with `query`, then env[query.binding].query(the first
// embedding, query.options): what a retrieval Worker does. Errors as the Worker sees them.
export async function ai(env, { model, inputs, options, query }) {
  try {
    const embedding = await env.AI.run(model, inputs, options);
    if (!query) return { result: embedding };
    const matches = await env[query.binding ?? "VECTORIZE"].query(embedding.data[0], query.options ?? {});
    return { result: { embedding, matches } };
  } catch (error) {
    return { error: { name: error?.name ?? null, message: String(error?.message ?? error) } };
  }
}

export const LAUNCH_POST = [
  { id: "1", values: [32.4, 74.1, 3.2] },
  { id: "2", values: [15.1, 19.2, 15.8] },
  { id: "3", values: [0.16, 1.2, 3.8] },
  { id: "4", values: [75.1, 67.1, 29.9] },
  { id: "5", values: [58.8, 6.7, 3.4] },
];

export async function launchPost(index) {
  const inserted = await index.upsert(LAUNCH_POST);
  const matches = await index.query([54.8, 5.5, 3.1], { topK: 3 });
  return { result: { inserted, matches } };
}

// `calls` binding calls, `parallel` at a time: queries, upserts, getByIds and deleteByIds mixed.
export async function load(index, { calls = 2000, parallel = 50, dimensions = 3 }) {
  const vector = (i) => Array.from({ length: dimensions }, (_, d) => ((i * 7919 + d * 104729) % 1000) / 1000 + 0.001);
  const kinds = [
    (i) => index.query(vector(i), { topK: 5 }),
    (i) => index.upsert([{ id: `load-${i % 200}`, values: vector(i), metadata: { i } }]),
    (i) => index.getByIds([`load-${i % 200}`, `load-${(i + 1) % 200}`]),
    (i) => index.query(vector(i), { topK: 3, returnMetadata: "all", returnValues: true }),
    (i) => index.deleteByIds([`load-${(i + 100) % 200}`]),
  ];
  const durations = [];
  const errors = [];
  let next = 0;
  const started = Date.now();
  async function worker() {
    while (next < calls) {
      const i = next++;
      const t0 = performance.now();
      try {
        await kinds[i % kinds.length](i);
      } catch (error) {
        errors.push(String(error?.message ?? error));
      }
      durations.push(performance.now() - t0);
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker));
  const seconds = (Date.now() - started) / 1000;
  durations.sort((a, b) => a - b);
  const at = (q) => durations[Math.min(durations.length - 1, Math.floor(q * durations.length))];
  return { result: { calls, parallel, failed: errors.length, errors: errors.slice(0, 5), seconds,
                     p50: at(0.5), p99: at(0.99) } };
}

// What users write against production's asynchronous writes: upsert, then poll describe() until
// processedUpToMutation is the upsert's mutation, and only then read. Returns what it saw on the way.
export async function readYourWrites(index, { id, values, deadlineMs = 120000 }) {
  const before = await index.describe();
  const { mutationId } = await index.upsert([{ id, values }]);
  const soon = { got: await index.getByIds([id]), info: await index.describe(),
                 query: await index.query(values, { topK: 1 }) };
  const started = Date.now();
  let info;
  let polls = 0;
  do {
    if (polls++) await new Promise((resolve) => setTimeout(resolve, 50));
    info = await index.describe();
  } while (info.processedUpToMutation !== mutationId && Date.now() - started < deadlineMs);
  const after = { got: await index.getByIds([id]), info, query: await index.query(values, { topK: 1 }) };
  return { result: { before, mutationId, soon, after, polls, waitedMs: Date.now() - started } };
}
