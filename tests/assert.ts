/**
 * The few assertions the tests use, on top of `node:assert` (std's assert is not reachable here).
 * @module
 */
import nodeAssert from "node:assert/strict";

/** Fail unless `cond` is truthy. */
export function assert(cond: unknown, msg?: string): asserts cond {
  nodeAssert.ok(cond, msg);
}

/** Deep strict equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}

/** `fn` must throw; returns the error. `includes` must be part of its message. */
export function assertThrows(fn: () => unknown, includes?: string | RegExp): Error {
  try {
    fn();
  } catch (e) {
    const err = e as Error;
    if (includes !== undefined) assertMatch(err.message, includes);
    return err;
  }
  throw new nodeAssert.AssertionError({ message: "expected an exception" });
}

/** The promise must reject; returns the error. */
export async function assertRejects(fn: () => Promise<unknown>, includes?: string | RegExp): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    const err = e as Error;
    if (includes !== undefined) assertMatch(err.message, includes);
    return err;
  }
  throw new nodeAssert.AssertionError({ message: "expected a rejection" });
}

/** `s` contains `m` (string) or matches it (RegExp). */
export function assertMatch(s: string, m: string | RegExp, msg?: string): void {
  if (typeof m === "string") {
    nodeAssert.ok(s.includes(m), msg ?? `expected ${JSON.stringify(s)} to contain ${JSON.stringify(m)}`);
  } else nodeAssert.match(s, m, msg);
}
