/**
 * A server under an unauthenticated flood (issue 17): four sockets in a namespace that is no peer's send
 * 60 KB non-data datagrams at the server's port for 12 seconds. Before, every one was copied to the main thread
 * and logged (tens of thousands of lines, hundreds of MB). Now the receiving worker counts and drops them:
 * the server's memory stays flat, it writes a handful of lines, and its real client keeps working.
 */
import { assert, assertEquals } from "./assert.ts";
import { StarLab } from "../cmd/netns.ts";
import { parsePing } from "../cmd/demo.ts";
import { writeNewKeyFile } from "../keys/keyfile.ts";
import { rssMb, starClientArgs, verifiedTransfer } from "./lab.ts";

const SRV = "ovpn-srv";

Deno.test({
  name:
    "hostile server: a flood of 60 KB non-data datagrams from four non-peer sockets costs no memory, no log flood, no service",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const lab = await StarLab.create(150, 2);
    try {
      const srv = lab.startTool("s", [
        ...["start", "--mode", "server", "--local", `${lab.outer4.s}:1194`, "--ifname", SRV],
        ...["--ifaddr", "10.79.0.1/24", "--stats-interval", "0"],
      ]);
      const t = async (args: string[]) => {
        const r = await lab.tool("s", [...args, "--ifname", SRV]);
        assertEquals(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
        return r.stdout;
      };
      await lab.waitFor(
        async () => (await lab.tool("s", ["peer", "list", "--ifname", SRV])).code === 0,
        30000,
        "the server",
      );
      const key = `${lab.runDir}/c1.key`;
      await writeNewKeyFile(key);
      await t(["peer", "new", "1", `${lab.outer4.s}:1194`, `${lab.outer4.c1}:1194`, "--vpn-ip", "10.79.0.2"]);
      await t(["key", "new", "1", "AES-256-GCM", "0", key, "--slot", "primary"]);
      lab.startTool(
        "c1",
        starClientArgs({
          local: `${lab.outer4.c1}:1194`,
          server: `${lab.outer4.s}:1194`,
          peerId: 1,
          addr4: "10.79.0.2",
          addr6: "fd79::2",
          key,
          proto: "udp",
        }),
      );
      const ping = async (n: number) =>
        parsePing(
          await lab.run("c1", ["ping", "-c", String(n), "-i", "0.2", "-W", "2", "10.79.0.1"], {
            allowFail: true,
          }),
        )
          .received;
      await lab.waitFor(async () => (await ping(1)) === 1, 30000, "client 1 reaching the server");
      // the real client's TCP throughput through the server, 3 s, before and during the flood (printed: speed is
      // the bench's to judge — bench:tunnel's flooded row — not a timed test's)
      const iperfSrv = lab.spawn("s", ["iperf3", "-s", "--forceflush", "-B", "10.79.0.1"]);
      await lab.waitFor(() => iperfSrv.output().includes("listening"), 10000, "the iperf3 server");
      const mbit = async () => {
        const r = JSON.parse(
          await lab.run("c1", ["iperf3", "-c", "10.79.0.1", "-t", "3", "-J"], { allowFail: true }),
        );
        return r.end?.sum_received ? r.end.sum_received.bits_per_second / 1e6 : 0;
      };
      const quiet = await mbit();
      // the reference: the same flood at a port of the server's host where nothing listens — what the flood costs
      // this machine (the flooding process, fragment reassembly) whatever the server does
      const refFlood = lab.spawn("c2", [
        ...[Deno.execPath(), "run", "-A", new URL("./helpers/flood.ts", import.meta.url).pathname],
        ...[lab.outer4.s, "1195", "6", "4", String(60 * 1024), "1000000"],
      ]);
      await new Promise((r) => setTimeout(r, 1500));
      const reference = await mbit();
      assert((await refFlood.status).success, refFlood.output());
      const rss0 = rssMb(srv.pid), lines0 = srv.output().split("\n").length;
      const flood = lab.spawn("c2", [
        ...[Deno.execPath(), "run", "-A", new URL("./helpers/flood.ts", import.meta.url).pathname],
        ...[lab.outer4.s, "1194", "12", "4", String(60 * 1024), "1000000"],
      ]);
      await new Promise((r) => setTimeout(r, 1500));
      // the real client during the flood: pings, a verified transfer and its throughput
      const during = await ping(10);
      await verifiedTransfer(lab, "10.79.0.1", 2 * 1024 * 1024, 5501, "c1", "s");
      const flooded = await mbit();
      console.log(
        `  the real client's TCP throughput: ${quiet.toFixed(0)} Mbit/s before, ${
          reference.toFixed(0)
        } while the flood hits a port where nothing listens (${
          (reference / quiet).toFixed(2)
        }: the flood's cost to this machine), ${flooded.toFixed(0)} while it hits the server (${
          (flooded / quiet).toFixed(2)
        } of quiet, ${(flooded / reference).toFixed(2)} of the reference)`,
      );
      assert(flooded > 0, "the real client moved nothing during the flood");
      const st = await flood.status;
      assert(st.success, flood.output());
      const sent = Number(flood.output().trim().split("\n").pop());
      const rss1 = rssMb(srv.pid), lines1 = srv.output().split("\n").length;
      const all = JSON.parse(await t(["stats", "--all", "--json"]));
      // the datagrams are longer than any control packet: the socket's filter drops them in the kernel (counted
      // as kernel-socket); any that slipped past it are the worker's (wrong-source)
      const inKernel = all.device.drops?.["kernel-socket"] ?? 0;
      const dropped = inKernel + (all.device.drops?.["wrong-source"] ?? 0);
      console.log(
        `  flood: ${sent} datagrams sent, ${dropped} counted and dropped by the server (${inKernel} of them in the kernel); RSS ${
          rss0.toFixed(0)
        } → ${rss1.toFixed(0)} MB; ${lines1 - lines0} log lines; ${during}/10 pings during it`,
      );
      assert(sent > 1000, `the flood sent only ${sent}`);
      assert(dropped > 500, `the server counted ${dropped} of ${sent}`);
      assert(inKernel > 500, `the socket filter dropped ${inKernel} of ${sent}`);
      assertEquals(all.total.rcvdCtrlPkts, 0, "flood datagrams passed up as control packets");
      assert(rss1 - rss0 < 50, `the server's memory grew by ${(rss1 - rss0).toFixed(0)} MB`);
      assert(
        lines1 - lines0 < 100,
        `the server wrote ${lines1 - lines0} lines:\n${srv.output().slice(-500)}`,
      );
      assert(during >= 8, `the real client got ${during}/10 pings through during the flood`);
    } finally {
      await lab.destroy();
    }
  },
});

Deno.test({
  name:
    "hostile server (tcp): a squatter from a client's address takes nothing; a client that stops reading stalls nobody and is disconnected after 5 s",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const lab = await StarLab.create(151, 3);
    let client3: { pid: number } | null = null;
    try {
      const P = ["--proto", "tcp"];
      const srv = lab.startTool("s", [
        ...["start", "--mode", "server", "--local", `${lab.outer4.s}:1194`, "--ifname", SRV, ...P],
        ...["--ifaddr", "10.80.0.1/24", "--stats-interval", "0"],
      ]);
      const t = async (args: string[]) => {
        const r = await lab.tool("s", [...args, "--ifname", SRV]);
        assertEquals(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
        return r.stdout;
      };
      await lab.waitFor(
        async () => (await lab.tool("s", ["peer", "list", "--ifname", SRV])).code === 0,
        30000,
        "the server",
      );
      const events = lab.spawn("s", [
        ...(await import("../cmd/netns.ts")).selfCommand(),
        "events",
        "--ifname",
        SRV,
        "--json",
      ]);
      const keys: Record<string, string> = {};
      for (const i of [1, 2, 3]) {
        const c = `c${i}`, key = keys[c] = `${lab.runDir}/${c}.key`;
        await writeNewKeyFile(key);
        // client 3 may come from any port of its address
        await t([
          "peer",
          "new",
          String(i),
          `${lab.outer4.s}:1194`,
          `${lab.outer4[c]}:${i === 3 ? 0 : 1194}`,
          "--vpn-ip",
          `10.80.0.${i + 1}`,
          ...P,
        ]);
        await t(["key", "new", String(i), "AES-256-GCM", "0", key, "--slot", "primary"]);
      }
      // a squatter connects first from client 3's address and sends nothing: it must not take client 3's place
      const squat = lab.spawn("c3", [
        Deno.execPath(),
        "eval",
        `const c = await Deno.connect({ hostname: "${lab.outer4.s}", port: 1194 }); console.log("connected");
         await new Promise((r) => setTimeout(r, 40000)); c.close();`,
      ]);
      await lab.waitFor(() => squat.output().includes("connected"), 30000, "the squatter's connection");
      for (const i of [1, 2, 3]) {
        const c = `c${i}`;
        const proc = lab.startTool(
          c,
          starClientArgs({
            local: `${lab.outer4[c]}:1194`,
            server: `${lab.outer4.s}:1194`,
            peerId: i,
            addr4: `10.80.0.${i + 1}`,
            addr6: `fd80::${i + 1}`,
            key: keys[c],
            proto: "tcp",
          }),
        );
        if (i === 3) client3 = proc;
      }
      const ping = async (c: string, n: number) =>
        parsePing(
          await lab.run(c, ["ping", "-c", String(n), "-i", "0.2", "-W", "2", "10.80.0.1"], {
            allowFail: true,
          }),
        )
          .received;
      for (const c of ["c1", "c2", "c3"]) {
        await lab.waitFor(
          async () => (await ping(c, 1)) === 1,
          30000,
          `${c} up\n${srv.output().slice(-800)}`,
        );
      }
      assert(/peer 3: TCP connected from/.test(srv.output()), srv.output());
      // client 3 stops reading (the whole process stopped): its connection fills up
      Deno.kill(client3!.pid, "SIGSTOP");
      const flood = lab.spawn("s", [
        ...[Deno.execPath(), "run", "-A", new URL("./helpers/flood.ts", import.meta.url).pathname],
        ...["10.80.0.4", "9", "3", "2", "1400", "400000"],
      ]);
      await new Promise((r) => setTimeout(r, 2000));
      // while it is stuck: the other clients get through, and the control socket answers at once
      const t0 = Date.now();
      const list = await t(["peer", "list"]);
      const answered = Date.now() - t0;
      assert(list.includes("10.80.0.2"), list);
      assertEquals(await ping("c1", 3), 3, "client 1 during the stall");
      assertEquals(await ping("c2", 3), 3, "client 2 during the stall");
      await flood.status;
      // the stalled client is disconnected once it has taken nothing for 5 s
      await lab.waitFor(
        () => /"peerId":3[^\n]*transport-error|transport-error[^\n]*"peerId":3/.test(events.output()),
        20000,
        `DEL_PEER of the stalled client: ${events.output()}`,
      );
      const all = JSON.parse(await t(["stats", "--all", "--json"]));
      console.log(
        `  peer list answered in ${answered} ms (a Deno start included) during the stall; lost out to the stalled peer: ${
          JSON.stringify(all.total.lostOutDataPkts)
        }`,
      );
      assert(answered < 10000, `the control socket took ${answered} ms`);
      assertEquals(await ping("c1", 2), 2);
    } finally {
      if (client3) {
        try {
          Deno.kill(client3.pid, "SIGCONT");
        } catch { /* gone */ }
      }
      await lab.destroy();
    }
  },
});
