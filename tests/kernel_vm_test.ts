/**
 * Linux's own kernel data channel, for real: boots Debian's kernel with the `ovpn` module under QEMU
 * (tests/vm/run-in-vm.sh: the kernel from Debian's archive through a private apt configuration, cached in
 * /var/tmp/ovpn-vm), runs every case of tests/vm/kernel_cases.ts in one boot, and reports each case as a test
 * of its own. On the host (no module): `--backend dco` is one clear line and exit 8. Needs root and
 * qemu-system-x86 (scripts/test.sh installs it); a case that did not run is a failure.
 */
import { assert, assertEquals } from "./assert.ts";
import { KERNEL_CASES } from "./vm/case_names.ts";
import { selfCommand } from "../cmd/netns.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
let results: Record<string, { ok: boolean; error?: string; ms: number; notes: string[] }> | null = null;
let bootError = "";

Deno.test({
  name: "kernel VM: boot Linux with the ovpn module and run the kernel cases",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "ovpn-vm-results-" });
    try {
      const file = `${dir}/results.json`;
      const cmd = new Deno.Command("bash", {
        args: [
          `${ROOT}/tests/vm/run-in-vm.sh`,
          `${Deno.execPath()} run -A --no-prompt tests/vm/kernel_cases.ts ${file}`,
        ],
        cwd: ROOT,
        // not niced: the suite runs its files one at a time, and a niced VM starves on a machine busy with other
        // work (10 % of a core against two busy loops: over 40 minutes instead of 7)
        env: { OVPN_VM_RW: dir, OVPN_VM_TIMEOUT: "2400", OVPN_VM_QUIET: "0", OVPN_VM_NICE: "0" },
        stdout: "piped",
        stderr: "piped",
      });
      const out = await cmd.output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      console.log(text.split("\n").filter((l) => /^(ok|FAIL|kernel cases|run-in-vm)/.test(l)).join("\n"));
      try {
        results = JSON.parse(await Deno.readTextFile(file));
      } catch {
        bootError = text.trim().split("\n").slice(-15).join("\n");
        throw new Error(`the VM produced no results (exit ${out.code}):\n${bootError}`);
      }
      // the guest's own exit status is 1 when a case failed: each case reports below
      // a guest kernel's crash: from its first line (the whole trace names what died), else the tail
      const oops = text.search(/\n[^\n]*(BUG:|Oops|int3|invalid opcode|general protection|Kernel panic)/);
      const tail = oops >= 0 ? text.slice(oops, oops + 8000) : text.slice(-2000);
      assert(out.code === 0 || out.code === 1, `the VM ended with ${out.code}:\n${tail}`);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

for (const name of KERNEL_CASES) {
  Deno.test({
    name: `kernel VM: ${name}`,
    fn() {
      if (!results) throw new Error(`the VM did not run: ${bootError || "see the boot test"}`);
      const r = results[name];
      if (!r) throw new Error("this case did not run in the VM");
      if (!r.ok) throw new Error(r.error);
      if (r.notes.length) console.log(`  ${r.notes.join("; ")} (${(r.ms / 1000).toFixed(1)} s in the VM)`);
    },
  });
}

Deno.test("kernel backend on a host without the ovpn module: --backend dco is one clear line, exit 8", async () => {
  let present = false;
  try {
    Deno.statSync("/sys/module/ovpn");
    present = true;
  } catch { /* absent, as on these machines */ }
  assert(!present, "this host has the ovpn module loaded; this case needs a host without it");
  const runDir = await Deno.makeTempDir({ prefix: "ovpn-host-" });
  const run = async (args: string[]) => {
    const out = await new Deno.Command(selfCommand()[0], {
      args: [...selfCommand().slice(1), ...args],
      stdout: "piped",
      stderr: "piped",
      env: { OVPN_DCO_CLI_RUNDIR: runDir },
    }).output();
    return {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr).trim(),
    };
  };
  try {
    await hostCase(run);
  } finally {
    await Deno.remove(runDir, { recursive: true });
  }
});

async function hostCase(
  run: (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>,
): Promise<void> {
  const r = await run(["start", "--backend", "dco", "--remote", "127.0.0.1:1", "--ifname", "ovpnhostx"]);
  assertEquals(r.code, 8, r.stderr);
  assertEquals(r.stderr.split("\n").length, 1, r.stderr);
  assert(/ovpn module is not available.*--backend tun/.test(r.stderr), r.stderr);
  const s = await run([
    "start",
    "--mode",
    "server",
    "--backend",
    "dco",
    "--local",
    "127.0.0.1:1",
    "--ifname",
    "ovpnhosty",
  ]);
  assertEquals(s.code, 8, s.stderr);
  assertEquals(s.stderr.split("\n").length, 1, s.stderr);
  const v = await run(["version"]);
  assertEquals(v.code, 0, v.stderr);
  assert(/Linux's ovpn module is not available/.test(v.stdout), v.stdout);
}
