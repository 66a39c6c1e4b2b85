// Equal, numbers to 1e-6 (scores, embeddings), for the vitest tests of this project.
import { expect } from "vitest";

export function close(got, want, where = "") {
  if (typeof want === "number") {
    expect(typeof got, where).toBe("number");
    expect(Math.abs(got - want), `${where}: ${got} vs ${want}`).toBeLessThanOrEqual(1e-6);
  } else if (Array.isArray(want)) {
    expect(Array.isArray(got) && got.length, where).toBe(want.length);
    want.forEach((w, i) => close(got[i], w, `${where}[${i}]`));
  } else if (want !== null && typeof want === "object") {
    expect(Object.keys(got ?? {}).sort(), where).toEqual(Object.keys(want).sort());
    for (const key of Object.keys(want)) close(got[key], want[key], `${where}.${key}`);
  } else {
    expect(got, where).toBe(want);
  }
}
