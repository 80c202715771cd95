/**
 * The command line: a table of bad invocations, each with the message fragment and exit code it must
 * give, as one line on stderr with no stack trace and no key bytes. Some rows need root (tun devices,
 * dropping privileges); CI runs as root.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { selfCommand, V8_FLAGS } from "../cmd/netns.ts";
import { boundPort, udpSocket } from "../driver/userspace/sockets_linux.ts";
import { libc } from "../ffi/libc.ts";
import { formatStats, newStats, STATS_FIELDS, statsToJson } from "../driver/datachannel/stats.ts";

const dir = await Deno.makeTempDir({ prefix: "ovpn-cli-test-" });
// the key files, run directory and Deno cache of these tests go when the module's tests are done (any of them)
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const runDir = `${dir}/run`;
const f = (name: string, text: string) => {
  Deno.writeTextFileSync(`${dir}/${name}`, text);
  return `${dir}/${name}`;
};
const goodKey = f(
  "good.key",
  btoa(String.fromCharCode(...new Uint8Array(72).map((_, i) => (i * 37) & 0xff))),
);
const badB64 = f("bad.key", "this is not base64!!\n");
const shortKey = f("short.key", btoa("0123456789"));
const json = (o: unknown) => JSON.stringify(o);
const dirs = {
  encrypt: { key: "aa".repeat(32), nonceTail: "bb".repeat(8) },
  decrypt: { key: "cc".repeat(32), nonceTail: "dd".repeat(8) },
};
const jsonShort = f(
  "short.json",
  json({ cipher: "AES-256-GCM", ...dirs, encrypt: { key: "aa".repeat(16), nonceTail: "bb".repeat(8) } }),
);
const jsonHex = f(
  "hex.json",
  json({ ...dirs, decrypt: { key: "zz" + "cc".repeat(31), nonceTail: "dd".repeat(8) } }),
);
const jsonCipher = f("cipher.json", json({ cipher: "BF-CBC", ...dirs }));
const jsonGood = f("good.json", json({ cipher: "AES-256-GCM", ...dirs }));
const jsonHalfEpoch = f(
  "half-epoch.json",
  json({
    ...dirs,
    encrypt: { key: "aa".repeat(32), nonceTail: "bb".repeat(8), epochSecret: "ee".repeat(32) },
  }),
);
const existing = f("exists.key", "x");

async function run(args: string[], env: Record<string, string> = {}, asNobody = false) {
  const cmd = [
    // nobody, without CAP_NET_ADMIN; CAP_DAC_READ_SEARCH only so that it can read this checkout wherever it
    // sits (root's home and mktemp -d are 0700)
    ...(asNobody
      ? [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
      ]
      : []),
    ...selfCommand(),
    ...args,
  ];
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "piped",
    env: { OVPN_DCO_CLI_RUNDIR: runDir, NO_COLOR: "1", DENO_DIR: `${dir}/deno-cache`, ...env },
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

const S = ["start", "--stats-interval", "0"];

/** `start` without a peer on `ifname`, once its control socket is up. */
async function startInstance(ifname: string): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(selfCommand()[0], {
    args: [...selfCommand().slice(1), ...S, "--ifname", ifname],
    stdout: "null",
    stderr: "null",
    env: { OVPN_DCO_CLI_RUNDIR: runDir },
  }).spawn();
  const deadline = Date.now() + 15000;
  // control sockets live in a directory per network namespace
  const sock = `${runDir}/net-${Deno.statSync("/proc/self/ns/net").ino}/${ifname}.sock`;
  while (Date.now() < deadline && !(await Deno.stat(sock).catch(() => null))) {
    await new Promise((r) => setTimeout(r, 100));
  }
  return child;
}
const R = ["--remote", "127.0.0.1:1"];
const UP = (
  extra: string[],
) => [
  "udp",
  "i4",
  "127.0.0.1",
  "1194",
  "127.0.0.2",
  "1194",
  "10.0.0.1",
  "255.255.255.0",
  "10.0.0.1",
  ...extra,
];

/** [args, message fragment, exit code] */
const table: [string[], string | RegExp, number][] = [
  [["bogus"], "unknown command 'bogus'", 2],
  [["start", "--bogus"], "Unknown option '--bogus'", 2],
  [[...S, "--remote", "1.2.3"], "is not ADDR:PORT", 2],
  [[...S, "--remote", "1.2.3.4"], "has no port", 2],
  [[...S, "--remote", "1.2.3.4:99999"], "is not a port number", 2],
  [[...S, "--remote", "[fd00::1]:x"], "is not ADDR:PORT", 2],
  [[...S, ...R, "--proto", "sctp"], "is not udp or tcp", 2],
  [[...S, ...R, "--listen"], "--listen is for --proto tcp", 2],
  [[...S, ...R, "--ifaddr", "10.0.0.1"], "is not ADDR/PREFIX", 2],
  [[...S, ...R, "--ifaddr", "10.0.0.1/33"], "is not ADDR/PREFIX", 2],
  [[...S, ...R, "--mtu", "100"], "--mtu: '100' must be an integer from 576 to 9000", 2],
  [[...S, ...R, "--cipher", "AES-256-CBC"], "is not one of AES-128-GCM", 2],
  [[...S, ...R, "--cipher", "AES-256-GCM"], "needs a key: add --key FILE", 2],
  [[...S, ...R, "--key", `${dir}/missing.key`], "does not exist; create one with 'ovpn-dco-cli genkey", 3],
  [[...S, ...R, "--key", dir], "cannot be read", 3],
  [[...S, ...R, "--key", badB64], "not valid base64", 3],
  [[...S, ...R, "--key", shortKey], "decodes to 10 bytes, a data64.key needs at least 72", 3],
  [[...S, ...R, "--key", jsonShort], "has 16 bytes; it must have 32 bytes", 3],
  [[...S, ...R, "--key", jsonHex], "is not valid hex", 3],
  [[...S, ...R, "--key", jsonCipher], 'unknown cipher "BF-CBC"', 3],
  [[...S, ...R, "--key", goodKey, "--key-direction", "x"], "--key-direction: 'x' must be an integer", 2],
  [
    [...S, ...R, "--key", goodKey, "--key-direction", "2"],
    "--key-direction: '2' must be an integer from 0 to 1",
    2,
  ],
  [[...S, ...R, "--keepalive", "10"], "is not INTERVAL,TIMEOUT", 2],
  [[...S, ...R, "--keepalive", "30,10"], "must be shorter than the timeout", 2],
  [[...S, ...R, "--backend", "foo"], "--backend: 'foo' is not one of auto, dco, wintun, tun", 2],
  // this host has no ovpn module (the kernel backend itself is tested in the VM: kernel_vm_test.ts)
  [[...S, ...R, "--backend", "dco"], "Linux's ovpn module is not available", 8],
  [[...S, ...R, "--crypto", "foo"], "--crypto: 'foo' is not one of", 2],
  // a provider that cannot do the cipher, or is not there at all, is one line before any interface is made
  [
    [...S, ...R, "--crypto", "node", "--cipher", "AES-192-GCM", "--key", goodKey],
    "provider 'node' cannot do AES-192-GCM",
    2,
  ],
  [[...S, ...R, "--crypto", "cng"], "provider 'cng' is not available here", 2],
  [[...S, ...R, "--peer-id", "99999999"], "--peer-id: '99999999' must be an integer from 0 to 16777215", 2],
  [[...S, ...R, "--ifname", "a-very-long-interface-name"], "is not a valid interface name", 2],
  [[...S, "--local", "127.0.0.1:5"], "add --remote ADDR:PORT", 2],
  [
    [...S, "--ifname", "ovt-mixed", "--local", "127.0.0.1:0", "--remote", "[::1]:1"],
    "different IP versions",
    2,
  ],
  [
    [...S, "--ifname", "ovt-nothere", "--local", "203.0.113.77:1194", ...R],
    /^ovpn-dco-cli: --local: 203\.0\.113\.77 is not an address of this host/, // first line: nothing was made
    2,
  ],
  [
    [...S, "--mode", "server", "--ifname", "ovt-nothere2", "--local", "203.0.113.77:1194"],
    /^ovpn-dco-cli: --local: 203\.0\.113\.77 is not an address of this host/,
    2,
  ],
  [["stats", "--ifname", "ovt-none"], "no instance is running on interface 'ovt-none'", 5],
  [["peer", "set", "--keepalive", "5,30", "--ifname", "ovt-none"], "no instance is running", 5],
  [["key", "swap", "--ifname", "ovt-none"], "no instance is running", 5],
  [["key", "new", "0", "AES-999", "0", goodKey], "unknown cipher 'AES-999'", 2],
  [["key", "new", "0", "AES-256-GCM"], "expected <peer-id> <cipher> <key-direction> <key-file>", 2],
  [["key", "new", "0", "AES-256-GCM", "0", `${dir}/missing.key`], "does not exist", 3],
  [["key", "bogus"], "expected new, swap, del or epoch", 2],
  // server mode: flags and commands that do not fit
  [[...S, "--mode", "bogus"], "--mode: 'bogus' is not p2p or server", 2],
  [[...S, "--mode", "server"], "--mode server needs --local ADDR:PORT", 2],
  [
    [...S, "--mode", "server", "--local", "127.0.0.1:1194", ...R],
    "--remote is for a point-to-point tunnel",
    2,
  ],
  [
    [...S, "--mode", "server", "--local", "127.0.0.1:1194", "--key", goodKey],
    "--key is for a point-to-point",
    2,
  ],
  [
    [...S, "--mode", "server", "--local", "127.0.0.1:1194", "--proto", "sctp"],
    "--proto: 'sctp' is not udp or tcp",
    2,
  ],
  [
    [...S, "--mode", "server", "--local", "127.0.0.1:1194", "--backend", "wintun"],
    "--mode server on Linux runs on the tun or dco backend; the wintun backend needs Windows",
    2,
  ],
  [UP(["--mode", "server"]), "the positional form is point-to-point", 2],
  [["peer", "new", "0", "1.2.3.4:1", "1.2.3.5:1", "--peer-id", "3"], "the peer id is its first argument", 2],
  [
    ["peer", "new", "99999999", "1.2.3.4:1", "1.2.3.5:1"],
    "peer-id: '99999999' must be an integer from 0 to 16777215",
    2,
  ],
  [
    ["peer", "new", "1", "1.2.3.4:1", "1.2.3.5:1", "--vpn-ip", "10.0.0"],
    "--vpn-ip: '10.0.0' is not an IPv4 or IPv6 address",
    2,
  ],
  [["peer", "set", "--keepalive", "5,30", "--vpn-ip", "10.0.0.1"], "--vpn-ip is for 'peer new'", 2],
  [
    ["peer", "del", "--peer-id", "16777216"],
    "--peer-id: '16777216' must be an integer from 0 to 16777215",
    2,
  ],
  [["stats", "--peer-id", "1", "--all"], "give --peer-id N or --all, not both", 2],
  [["route", "add", "1"], "expected <peer-id> <CIDR>, got 1 arguments", 2],
  [["route", "add", "1", "10.0.0.0/33"], "is not ADDR/PREFIX", 2],
  [["route", "bogus"], "expected add or del", 2],
  [["route", "add", "1", "10.0.0.0/24", "--ifname", "ovt-none"], "no instance is running", 5],
  [["events", "--ifname", "ovt-none"], "no instance is running", 5],
  [
    ["key", "new", "1", "AES-256-GCM", "0", goodKey, "--peer-id", "1"],
    "the peer id is its first argument",
    2,
  ],
  [[...S, ...R, "--epoch"], "--epoch needs a key: add --key FILE", 2],
  [[...S, ...R, "--epoch", "--key", goodKey, "--cipher", "none"], "--epoch needs an AEAD cipher", 2],
  [[...S, ...R, "--epoch", "--key", jsonGood], "--epoch needs epoch secrets, and this JSON key has none", 3],
  [[...S, ...R, "--key", jsonHalfEpoch], "only one direction has an 'epochSecret'", 3],
  [["key", "epoch", "--ifname", "ovt-none"], "no instance is running", 5],
  [["key", "new", "0", "none", "0", "--epoch"], "--epoch needs a key file", 2],
  [UP(["--epoch"]), "--epoch needs a key file", 2],
  [["peer", "bogus"], "expected new, set, del, get or list", 2],
  [["peer", "set"], "nothing to set", 2],
  [["peer", "new", "0", "1.2.3.4:1"], "expected <peer-id> <local ADDR:PORT> <remote ADDR:PORT>", 2],
  [["genkey", "a", "b"], "at most one FILE", 2],
  [["genkey", existing], "already exists", 3],
  [["version", "x"], "takes no arguments", 2],
  [["udp", "i5", "1.2.3.4"], "expected at least 9 arguments", 2],
  [UP([]).map((x) => (x === "i4" ? "i5" : x)), "'i5' is not i4 or i6", 2],
  [
    UP([]).map((x) => (x === "127.0.0.1" ? "127.0.0.300" : x)),
    "local-ip: '127.0.0.300' is not an IPv4 address",
    2,
  ],
  [UP([]).map((x) => (x === "255.255.255.0" ? "255.0.255.0" : x)), "is not a netmask", 2],
  [UP([goodKey, "0", "extra"]), "expected at most 11 arguments", 2],
  [UP([`${dir}/missing.key`]), "does not exist", 3],
  [["demo", "--proto", "x"], "--proto: 'x' is not udp or tcp", 2],
  [["stats", "--ifname", "bad name!"], "is not a valid interface name", 2],
];

for (const [args, fragment, code] of table) {
  Deno.test(`cli: ${args.join(" ").replaceAll(dir, "<tmp>").slice(0, 90)} → exit ${code}`, async () => {
    const r = await run(args);
    assertEquals(r.code, code, `stderr: ${r.stderr}`);
    assertMatch(r.stderr, fragment);
    // progress lines may come first; the error is one line, the last, and the only one of its kind
    const lines = r.stderr.trim().split("\n");
    const errors = lines.filter((l) => l.startsWith("ovpn-dco-cli: "));
    assertEquals(errors.length, 1, `expected one error line: ${r.stderr}`);
    assertEquals(errors[0], lines[lines.length - 1]);
    assert(!/\n\s+at /.test(r.stderr), "stack trace printed");
    assert(!r.stderr.includes("aaaa") && !r.stderr.includes("cccc"), "key bytes printed");
  });
}

Deno.test("cli: a port in use, a second start on the same interface, and no privilege", async () => {
  const sock = udpSocket({ address: "127.0.0.1", port: 0 }, { address: "127.0.0.1", port: 1 });
  const port = boundPort(sock);
  try {
    const busy = await run([...S, "--ifname", "ovt-busy", "--local", `127.0.0.1:${port}`, ...R]);
    assertEquals(busy.code, 7, busy.stderr);
    assertMatch(busy.stderr, `local UDP port 127.0.0.1:${port} is already in use`);
  } finally {
    libc().symbols.close(sock);
  }
  const first = await startInstance("ovt-twice");
  try {
    const second = await run([...S, "--ifname", "ovt-twice"]);
    assertEquals(second.code, 7, second.stderr);
    assertMatch(second.stderr, "ovt-twice");
    const st = await run(["stats", "--ifname", "ovt-twice", "--json"]);
    assertEquals(st.code, 0, st.stderr);
    // server-only commands on a point-to-point instance: one clear line each
    for (
      const args of [
        ["peer", "list"],
        ["stats", "--all"],
        ["stats", "--peer-id", "1"],
        ["route", "add", "1", "10.9.0.0/24"],
        ["key", "swap", "--peer-id", "1"],
        ["peer", "get", "--peer-id", "1"],
        ["peer", "new", "1", "127.0.0.1:1194", "127.0.0.1:1195", "--vpn-ip", "10.9.0.2"],
      ]
    ) {
      const r = await run([...args, "--ifname", "ovt-twice"]);
      assertEquals(r.code, 5, `${args.join(" ")}: ${r.stderr}`);
      assertMatch(r.stderr, "is for a server-mode instance (start --mode server)");
      assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
    const ep = await run(["key", "epoch", "--ifname", "ovt-twice"]);
    assertEquals(ep.code, 5, ep.stderr);
    assertMatch(ep.stderr, "no peer is configured");
  } finally {
    first.kill("SIGTERM");
    assertEquals((await first.status).code, 0);
  }
  await Deno.chmod(dir, 0o755);
  const nobody = await run([...S, "--ifname", "ovt-nobody", ...R], {
    OVPN_DCO_CLI_RUNDIR: `${dir}/nobody-run`,
  }, true);
  assertEquals(nobody.code, 4, nobody.stderr);
  assertMatch(nobody.stderr, "permission denied; run as root");
  // an instance started by root (in root's run directory), asked by a user who is not root: "run as root", exit 4
  const rootInst = new Deno.Command(selfCommand()[0], {
    args: [...selfCommand().slice(1), ...S, "--ifname", "ovt-rootinst"],
    stdout: "null",
    stderr: "null",
    env: { OVPN_DCO_CLI_RUNDIR: "" },
  }).spawn();
  try {
    const sock = `/run/ovpn-dco-cli/net-${Deno.statSync("/proc/self/ns/net").ino}/ovt-rootinst.sock`;
    for (let i = 0; i < 150 && !(await Deno.stat(sock).catch(() => null)); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const asUser = await run(["stats", "--ifname", "ovt-rootinst"], { OVPN_DCO_CLI_RUNDIR: "" }, true);
    assertEquals(asUser.code, 4, asUser.stderr);
    assertMatch(asUser.stderr, "run this command as root");
    assertEquals(asUser.stderr.trim().split("\n").length, 1, asUser.stderr);
  } finally {
    rootInst.kill("SIGTERM");
    await rootInst.status;
  }
  const demo = await run(["demo"], {}, true);
  assertEquals(demo.code, 4, demo.stderr);
  assertMatch(demo.stderr, "demo needs root");
});

Deno.test("cli: every way of running the tool carries the same V8 flags (launcher, compile tasks, tests)", async () => {
  const root = new URL("../", import.meta.url).pathname;
  const flag = `--v8-flags=${V8_FLAGS}`;
  assert(selfCommand().includes(flag), selfCommand().join(" "));
  assert((await Deno.readTextFile(`${root}ovpn-dco-cli`)).includes(` ${flag} `), "the launcher");
  const tasks = JSON.parse(await Deno.readTextFile(`${root}deno.json`)).tasks as Record<string, string>;
  for (const t of ["compile:linux", "compile:windows"]) {
    assert(tasks[t].includes(` ${flag} `), `${t}: ${tasks[t]}`);
  }
  // Deno refuses a V8 flag it does not know, so the launcher's run proves the flag is a real one
  const out = await new Deno.Command(`${root}ovpn-dco-cli`, {
    args: ["version"],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  assert(
    new TextDecoder().decode(out.stdout).startsWith("ovpn-dco-cli "),
    new TextDecoder().decode(out.stderr),
  );
});

Deno.test("cli: help for the tool and every command, with an example; version", async () => {
  const top = await run(["--help"]);
  assertEquals(top.code, 0);
  for (const c of ["start", "peer", "key", "stats", "version", "genkey", "demo"]) {
    assertMatch(top.stdout, `  ${c} `);
    const h = await run([c, "--help"]);
    assertEquals(h.code, 0, c);
    assertMatch(h.stdout, "Usage:");
    if (c !== "version") assertMatch(h.stdout, "Example");
  }
  assertMatch((await run(["--version"])).stdout, /^ovpn-dco-cli \d+\.\d+\.\d+/);
  assertMatch((await run(["version"])).stdout, /^ovpn-dco-cli \d+\.\d+\.\d+/);
});

Deno.test("stats: golden block in upstream's format, and the JSON form", () => {
  const s = newStats();
  let i = 1;
  for (const [, k] of STATS_FIELDS) s[k] = i++ * 1000 + 7;
  assertEquals(
    formatStats(s),
    "lostInCtrlPkts: 1007\nlostInDataPkts: 2007\nlostOutCtrlPkts: 3007\nlostOutDataPkts: 4007\nrcvdCtrlPkts: 5007\n" +
      "rcvdDataPkts: 6007\nsentCtrlPkts: 7007\nsentDataPkts: 8007\ntransportBytesSent: 9007\n" +
      "transportBytesReceived: 10007\ntunBytesSent: 11007\ntunBytesReceived: 12007\n\n",
  );
  const j = statsToJson(s);
  assertEquals(Object.keys(j), STATS_FIELDS.map(([l]) => l));
  assertEquals(j.tunBytesReceived, 12007);
});

Deno.test("stats --json of a running instance matches its schema", async () => {
  const p = await startInstance("ovt-json");
  try {
    const r = await run(["stats", "--ifname", "ovt-json", "--json"]);
    assertEquals(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    const schema: Record<string, string> = { time: "string", ifname: "string", drops: "object" };
    for (const [label] of STATS_FIELDS) schema[label] = "number";
    assertEquals(Object.keys(o).sort(), Object.keys(schema).sort());
    for (const [k, t] of Object.entries(schema)) assertEquals(typeof o[k], t, k);
    assert(!Number.isNaN(Date.parse(o.time)));
    for (const v of Object.values(o.drops)) assertEquals(typeof v, "number");
  } finally {
    p.kill("SIGTERM");
    await p.status;
  }
});
