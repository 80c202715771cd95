/**
 * Soak and abuse, short form (issue 18; the long form is `deno task soak`): one tunnel at full rate for 60 s,
 * iperf3 TCP and 64-byte UDP alternating, while its control socket is abused — 100 `events` subscribers that
 * never read, a client that never sends, a 16 MB line without a newline, malformed JSON and 1 000 requests at
 * once. Every well-formed request is answered, the rest get one error each, the tunnel keeps moving packets and
 * drops none, and neither instance's resident memory grows by 10 MB once warm.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { soak } from "./soak.ts";

Deno.test({
  name:
    "soak (60 s at full rate, TCP and 64-byte UDP alternating) with the control socket abused: all answered, nothing dropped, memory flat",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    let abuse: Record<string, unknown> | null = null;
    const lines: string[] = [];
    const r = await soak({
      seconds: 60,
      phaseS: 6,
      sampleS: 5,
      warmS: 20,
      index: 172,
      say: (l) => lines.push(l),
      during: async (lab) => {
        await new Promise((res) => setTimeout(res, 10_000)); // once the traffic runs
        // in a's namespace with a's run directory, as the instance's own commands
        const p = lab.spawn("a", [
          Deno.execPath(),
          "run",
          "-A",
          new URL("./helpers/control_abuse.ts", import.meta.url).pathname,
          "ovpn-a",
        ]);
        const st = await p.status;
        assert(st.success, `the abuse helper failed: ${p.output().slice(-800)}`);
        abuse = JSON.parse(p.output().trim().split("\n").pop()!);
      },
    });
    console.log(lines.join("\n"));
    console.log(
      `  moved ${(r.bytes / 1e9).toFixed(2)} GB in ${r.phases} phases; RSS growth once warm: a ${
        r.growthA.toFixed(1)
      } MB, b ${r.growthB.toFixed(1)} MB; abuse: ${JSON.stringify(abuse)}`,
    );
    assert(abuse, "the abuse did not run");
    const a = abuse as Record<string, unknown>;
    assertEquals(a.answered, 1000, `well-formed requests answered: ${JSON.stringify(a)}`);
    assertEquals(a.subscribers, 100);
    assertMatch(String(a.malformed), /"ok":false,"error":"the request is not valid JSON/);
    assertMatch(String(a.longLine), /request too long/);
    assertEquals(a.silentClosed, true, "the client that never sent was kept");
    assert(r.phases >= 8, `only ${r.phases} traffic phases ran`);
    assertEquals(r.dropsA, {}, "drops inside the tunnel (a)");
    assertEquals(r.dropsB, {}, "drops inside the tunnel (b)");
    assert(r.growthA < 10 && r.growthB < 10, `memory grew once warm: a ${r.growthA} MB, b ${r.growthB} MB`);
  },
});
