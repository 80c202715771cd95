/**
 * The flagship: a Windows instance (wintun backend, the Windows build of Deno under Wine, fake
 * wintun.dll bridged into a real Linux tun) and a Linux instance (tun backend) form a tunnel between two
 * network namespaces; pings and verified TCP transfers pass in both directions, over UDP and TCP.
 * Wine's sockets are created by the wineserver, so the wineserver runs inside the "Windows" namespace.
 */
import { assertEquals, assertMatch } from "./assert.ts";
import { NetnsLab } from "../cmd/netns.ts";
import { parsePing } from "../cmd/demo.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";
import { statsOf, verifiedTransfer } from "./lab.ts";
import { runToFiles, wineEnv } from "./wine.ts";

const repo = new URL("..", import.meta.url).pathname;
const env = await wineEnv();

/** Run a command, its output discarded (wine helpers inherit stdio and would hold a pipe open). */
async function quiet(cmd: string[], extraEnv: Record<string, string> = {}) {
  await runToFiles(cmd[0], cmd.slice(1), { ...env, ...extraEnv });
}

let labIndex = 80;
const cases = [
  { proto: "udp", epoch: false },
  { proto: "tcp", epoch: false },
  { proto: "udp", epoch: true },
] as const;
for (const { proto, epoch } of cases) {
  const epochFlag = epoch ? ["--epoch"] : [];
  Deno.test({
    name: `Windows (wintun, under Wine) ↔ Linux (tun) over ${proto}${
      epoch ? " with epoch keys" : ""
    }: pings and verified transfers both ways${epoch ? ", epochs moved from each side" : ""}`,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      await quiet(["wineserver", "-k"]);
      const lab = await NetnsLab.create(labIndex++);
      try {
        await quiet(["ip", "netns", "exec", lab.ns.a, "wineserver", "-p"]); // Windows sockets live in a
        const keyFile = `${lab.runDir}/k.key`;
        await writeNewKeyFile(keyFile);
        const bridge = lab.spawn("a", [
          Deno.execPath(),
          "run",
          "-A",
          "--no-check",
          `${repo}/tests/helpers/wintun_bridge.ts`,
          "wtun",
          "40001",
          "40002",
          `${lab.inner4.a}/24`,
          `${lab.inner6.a}/64`,
        ]);
        await lab.waitFor(
          () => bridge.output().includes("bridge ready"),
          15000,
          `the wintun bridge (${bridge.output()})`,
        );
        const ep = (a: string) => `${a}:1194`;
        const linux = lab.startTool("b", [
          "start",
          "--ifname",
          "ovpn-b",
          "--proto",
          proto,
          ...(proto === "tcp" ? ["--listen"] : []),
          "--local",
          ep(lab.outer4.b),
          "--remote",
          ep(lab.outer4.a),
          "--ifaddr",
          `${lab.inner4.b}/24`,
          "--ifaddr",
          `${lab.inner6.b}/64`,
          "--key",
          keyFile,
          "--key-direction",
          "1",
          "--stats-interval",
          "0",
          ...epochFlag,
        ]);
        if (proto === "tcp") {
          await lab.waitFor(
            () => linux.output().includes("waiting for a TCP connection"),
            15000,
            "the Linux listener",
          );
        }
        const windows = lab.spawn("a", [
          "wine",
          env.DENO_WIN,
          "run",
          "-A",
          "--no-check",
          "main.ts",
          "start",
          "--backend",
          "wintun",
          "--ifname",
          "wtun",
          "--proto",
          proto,
          "--local",
          ep(lab.outer4.a),
          "--remote",
          ep(lab.outer4.b),
          "--key",
          keyFile.replace(/^\//, "Z:/"),
          "--key-direction",
          "0",
          "--stats-interval",
          "0",
          ...epochFlag,
        ], {
          ...env,
          WINTUN_FAKE_PORT: "40002",
          WINTUN_FAKE_PEER_PORT: "40001",
          OVPN_DCO_CLI_RUNDIR: "C:\\ovpn-run",
        });
        await lab.waitFor(
          async () => {
            const s = await Promise.race([
              windows.status,
              new Promise<null>((r) => setTimeout(() => r(null), 10)),
            ]);
            if (s) throw new Error(`the Windows instance exited: ${windows.output()}`);
            return parsePing(
              await lab.run("a", ["ping", "-c", "1", "-W", "1", lab.inner4.b], { allowFail: true }),
            ).received === 1;
          },
          45000,
          "a ping from the Windows side",
        ).catch((e) => {
          throw new Error(
            `${e.message}\n--- windows:\n${windows.output()}\n--- linux:\n${linux.output()}\n--- bridge:\n${bridge.output()}`,
          );
        });
        assertEquals(
          parsePing(await lab.run("a", ["ping", "-c", "3", "-i", "0.2", lab.inner4.b])).received,
          3,
        );
        assertEquals(
          parsePing(await lab.run("b", ["ping", "-c", "3", "-i", "0.2", lab.inner4.a])).received,
          3,
        );
        assertEquals(
          parsePing(await lab.run("a", ["ping", "-6", "-c", "3", "-i", "0.2", lab.inner6.b])).received,
          3,
        );
        await verifiedTransfer(lab, lab.inner4.b, 5 * 1024 * 1024, 5340, "a");
        await verifiedTransfer(lab, lab.inner4.a, 5 * 1024 * 1024, 5341, "b");
        assertEquals(windows.output().includes("wintun: adapter 'wtun'"), true, windows.output());
        if (epoch) {
          // Linux moves to epoch 2, Windows follows; then Windows (its own 'key epoch') moves to 3, Linux follows
          const winKeyEpoch = async () => {
            const r = await runToFiles("ip", [
              ...["netns", "exec", lab.ns.a, "wine", env.DENO_WIN, "run", "-A", "--no-check", "main.ts"],
              ...["key", "epoch", "--ifname", "wtun"],
            ], { ...env, OVPN_DCO_CLI_RUNDIR: "C:\\ovpn-run", NO_COLOR: "1" });
            return r.stdout + r.stderr;
          };
          assertEquals((await lab.tool("b", ["key", "epoch", "--ifname", "ovpn-b"])).code, 0);
          assertEquals(
            parsePing(await lab.run("a", ["ping", "-c", "3", "-i", "0.2", lab.inner4.b])).received,
            3,
          );
          let st = await statsOf(lab, "b");
          assertEquals([st.sendEpoch, st.recvEpoch], [2, 2], "the Windows side did not follow to epoch 2");
          assertMatch(await winKeyEpoch(), "wtun now sends with epoch 3");
          assertEquals(
            parsePing(await lab.run("b", ["ping", "-c", "3", "-i", "0.2", lab.inner4.a])).received,
            3,
          );
          st = await statsOf(lab, "b");
          assertEquals([st.sendEpoch, st.recvEpoch], [3, 3], "the Linux side did not follow to epoch 3");
          assertEquals(st.lostInDataPkts, 0, JSON.stringify(st.drops));
        }
      } finally {
        await lab.destroy();
        await quiet(["ip", "netns", "exec", lab.ns.a, "wineserver", "-k"]).catch(() => {});
        await quiet(["wineserver", "-k"]);
      }
    },
  });
}
