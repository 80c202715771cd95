/**
 * Windows side, under Wine: interface configuration through netsh against the recording netsh.exe that
 * tests/windows/setup.sh puts in System32 (Wine's own netsh does nothing). The exact commands are checked:
 * the interface by index, store=active, the IPv6 MTU only with IPv6 and an MTU of at least 1280, a failed MTU
 * step as a warning, netsh's output decoded in the OEM code page. Run by tests/windows_test.ts.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../assert.ts";
import { DcoDevice } from "../../driver/dco.ts";
import { WintunTun } from "../../driver/wintun.ts";
import { resetDriver } from "./fake_driver.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const LOG = "C:\\netsh-test.log";

/** Run `fn` with the fake netsh's environment; returns the commands it recorded. */
async function recording(env: Record<string, string>, fn: () => Promise<void>): Promise<string[]> {
  await Deno.remove(LOG).catch(() => {});
  const keys = ["FAKE_NETSH_LOG", "FAKE_NETSH_NO_IPV6", "FAKE_NETSH_FAIL_MTU4", ...Object.keys(env)];
  Deno.env.set("FAKE_NETSH_LOG", LOG);
  for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
  try {
    await fn();
  } finally {
    for (const k of keys) Deno.env.delete(k);
  }
  return (await Deno.readTextFile(LOG).catch(() => "")).split("\n").filter((l) => l);
}

/** A dco device on Wine's loopback interface "lo" (index 1): the fake driver has no device tree entry. */
async function dco(lines: string[]): Promise<DcoDevice> {
  resetDriver();
  return await DcoDevice.open({ ifname: "lo", log: (l) => lines.push(l) });
}

Deno.test({
  ...opts,
  name: "netsh: dco addresses and MTUs by interface index, store=active",
  async fn() {
    const lines: string[] = [];
    const d = await dco(lines);
    try {
      const cmds = await recording(
        {},
        () => d.configureInterface({ mtu: 1428, addresses: ["10.8.0.2/24", "fd00:8::2/64"] }),
      );
      assertEquals(cmds, [
        "interface ipv4 set address name=1 source=static address=10.8.0.2 mask=255.255.255.0 store=active",
        "interface ipv6 set address interface=1 address=fd00:8::2/64 store=active",
        "interface ipv4 set subinterface 1 mtu=1428 store=active",
        "interface ipv6 set subinterface 1 mtu=1428 store=active",
      ]);
      // under Wine the fake driver is no PnP device: the interface came from --ifname, and it says so
      assertMatch(lines.join("\n"), "using the interface named 'lo' (index 1)");
      // no addresses: netsh is not run at all
      assertEquals(await recording({}, () => d.configureInterface({ mtu: 1428, addresses: [] })), []);
    } finally {
      await d.close();
    }
  },
});

Deno.test({
  ...opts,
  name: "netsh: the IPv6 MTU only with an IPv6 address and an MTU of at least 1280",
  async fn() {
    const lines: string[] = [];
    const d = await dco(lines);
    try {
      const v4only = await recording(
        {},
        () => d.configureInterface({ mtu: 1400, addresses: ["10.8.0.2/30"] }),
      );
      assertEquals(v4only, [
        "interface ipv4 set address name=1 source=static address=10.8.0.2 mask=255.255.255.252 store=active",
        "interface ipv4 set subinterface 1 mtu=1400 store=active",
      ]);
      const small = await recording({}, () => d.configureInterface({ mtu: 1200, addresses: ["fd00::2/64"] }));
      assertEquals(small, [
        "interface ipv6 set address interface=1 address=fd00::2/64 store=active",
        "interface ipv4 set subinterface 1 mtu=1200 store=active",
      ]);
      assertMatch(lines.join("\n"), "1200 is below IPv6's minimum of 1280");
    } finally {
      await d.close();
    }
  },
});

Deno.test({
  ...opts,
  name: "netsh: a failed address is an error, a failed MTU a warning; output decoded in the OEM code page",
  async fn() {
    const lines: string[] = [];
    const d = await dco(lines);
    try {
      let err: Error | undefined;
      const cmds = await recording({ FAKE_NETSH_NO_IPV6: "1" }, async () => {
        err = await assertRejects(() => d.configureInterface({ mtu: 1428, addresses: ["fd00::2/64"] }));
      });
      assertMatch(err!.message, "setting address fd00::2/64 on 'lo' (interface 1) failed");
      assertMatch(err!.message, "Element not found.");
      assertEquals(cmds.length, 1); // nothing after the failed address
      await recording(
        { FAKE_NETSH_FAIL_MTU4: "1" },
        () => d.configureInterface({ mtu: 1428, addresses: ["10.8.0.2/24"] }),
      );
      const warn = lines.find((l) => l.includes("IPv4 MTU"));
      assert(warn, lines.join("\n"));
      assertMatch(
        warn,
        /^warning: setting the IPv4 MTU 1428 on 'lo' \(interface 1\) failed: .*Ungültiger Parameter\./,
      );
    } finally {
      await d.close();
    }
  },
});

Deno.test({
  ...opts,
  name: "netsh: an interface that cannot be found is one clear error; nothing is run",
  async fn() {
    resetDriver();
    const d = await DcoDevice.open({ ifname: "no-such-if", log: () => {} });
    try {
      const cmds = await recording({}, async () => {
        await assertRejects(
          () => d.configureInterface({ mtu: 1428, addresses: ["10.8.0.2/24"] }),
          "cannot find the network interface of the ovpn-dco adapter",
        );
      });
      assertEquals(cmds, []);
    } finally {
      await d.close();
    }
  },
});

Deno.test({
  ...opts,
  name: "netsh: wintun addresses go to the interface of the adapter's LUID",
  async fn() {
    const tun = WintunTun.open("wt-netsh");
    const lines: string[] = [];
    try {
      const cmds = await recording(
        {},
        () => tun.configure({ mtu: 1428, addresses: ["10.9.0.1/24"] }, (l) => lines.push(l)),
      );
      assertEquals(cmds, [
        "interface ipv4 set address name=1 source=static address=10.9.0.1 mask=255.255.255.0 store=active",
        "interface ipv4 set subinterface 1 mtu=1428 store=active",
      ]);
      assertEquals(lines, []); // found by LUID: no fallback, no warning
    } finally {
      tun.close();
    }
  },
});
