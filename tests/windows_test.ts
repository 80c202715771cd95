/**
 * The Windows code paths, tested on Linux: the Windows build of Deno runs the project's Windows modules
 * under Wine against a fake ovpn-dco driver (and a fake wintun.dll), per ../shared/windows-on-linux.md.
 * tests/windows/setup.sh builds the environment; each tests/windows/*.wintest.ts runs under Wine here.
 */
import { runToFiles, wineEnv } from "./wine.ts";
import { assert } from "./assert.ts";

const repo = new URL("..", import.meta.url).pathname;

const sh = runToFiles;
const env = await wineEnv();

let started = false;
async function ensureDriver() {
  if (started) return;
  // keep the wineserver (and so the driver service) alive while the suites run
  await sh("wineserver", ["-p"], env); // forks a persistent server and returns
  const r = await sh("wine", ["sc", "start", "ovpndco"], env);
  if (r.code !== 0 && !/already|running/i.test(r.stdout + r.stderr)) {
    const q = await sh("wine", ["sc", "query", "ovpndco"], env);
    if (!q.stdout.includes("RUNNING")) {
      throw new Error(`cannot start the fake driver: ${r.stdout}${r.stderr}${q.stdout}`);
    }
  }
  started = true;
}

/** Suites run under Wine: the Windows-only ones, and the portable unit suites again on Windows. */
const suites = [
  ...[...Deno.readDirSync(`${repo}/tests/windows`)].filter((e) => e.name.endsWith(".wintest.ts")).map((e) =>
    `tests/windows/${e.name}`
  ).sort(),
  "crypto/vectors_test.ts",
  "crypto/epoch_vectors_test.ts",
  "crypto/providers_test.ts",
  "driver/datachannel/channel_test.ts",
  "driver/datachannel/channel_epoch_test.ts",
  "keys/keyfile_test.ts",
];

for (const suite of suites) {
  Deno.test({
    name: `windows (Wine): ${suite}`,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      await ensureDriver();
      const r = await sh("wine", [env.DENO_WIN, "test", "-A", "--no-check", suite], {
        ...env,
        NO_COLOR: "1",
        WINTUN_FAKE_PORT: "40102",
        WINTUN_FAKE_PEER_PORT: "40101",
      });
      const out = r.stdout + r.stderr;
      console.log(
        out.split("\n").filter((l) => / \.\.\. (ok|FAILED)/.test(l)).map((l) => `  [wine] ${l}`).join("\n"),
      );
      assert(
        r.code === 0 && /ok \| \d+ passed \| 0 failed/.test(out),
        `Windows suite ${suite} failed:\n${out}`,
      );
    },
  });
}

Deno.test({
  name: "windows (Wine): tear down the wineserver",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await sh("wineserver", ["-k"], env);
  },
});
