/**
 * The chart of `deno task bench:server`: three panels with the number of peers on a logarithmic x axis — the
 * server's packet rate each way, its CPU-seconds per GB each way, and the resident memory per peer added.
 * @module
 */

/** The figures of one measured peer count (bench/server.ts's row). */
export interface ChartRow {
  peers: number;
  upPps: number;
  downPps: number;
  upCpuPerGB: number;
  downCpuPerGB: number;
  rssPerPeerKB: number;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

/** An SVG of `rows` (rows without a figure — e.g. memory per peer at 1 peer — leave a gap in that line). */
export function serverChart(rows: ChartRow[], title: string): string {
  const W = 300, H = 220, PAD = { l: 56, r: 12, t: 28, b: 40 };
  const peers = rows.map((r) => r.peers);
  const xMin = Math.log10(Math.min(...peers)), xMax = Math.log10(Math.max(...peers));
  const panels: {
    name: string;
    unit: string;
    lines: { label: string; color: string; v: (r: ChartRow) => number }[];
  }[] = [
    {
      name: "packets/s",
      unit: "k",
      lines: [
        { label: "up", color: "#1f77b4", v: (r) => r.upPps / 1000 },
        { label: "down", color: "#ff7f0e", v: (r) => r.downPps / 1000 },
      ],
    },
    {
      name: "server CPU-s per GB",
      unit: "",
      lines: [
        { label: "up", color: "#1f77b4", v: (r) => r.upCpuPerGB },
        { label: "down", color: "#ff7f0e", v: (r) => r.downCpuPerGB },
      ],
    },
    {
      name: "KB of memory per peer",
      unit: "",
      lines: [{ label: "added", color: "#2ca02c", v: (r) => (r.peers > 1 ? r.rssPerPeerKB : NaN) }],
    },
  ];
  const parts: string[] = [];
  panels.forEach((p, k) => {
    const x0 = k * W;
    const values = rows.flatMap((r) => p.lines.map((l) => l.v(r))).filter(Number.isFinite);
    const yMax = Math.max(1e-9, ...values) * 1.1;
    const x = (n: number) =>
      x0 + PAD.l + ((Math.log10(n) - xMin) / Math.max(1e-9, xMax - xMin)) * (W - PAD.l - PAD.r);
    const y = (v: number) => PAD.t + (1 - v / yMax) * (H - PAD.t - PAD.b);
    parts.push(
      `<text x="${x0 + W / 2}" y="16" text-anchor="middle" font-weight="bold">${esc(p.name)}</text>`,
    );
    parts.push(
      `<line x1="${x0 + PAD.l}" y1="${H - PAD.b}" x2="${x0 + W - PAD.r}" y2="${H - PAD.b}" stroke="#888"/>`,
      `<line x1="${x0 + PAD.l}" y1="${PAD.t}" x2="${x0 + PAD.l}" y2="${H - PAD.b}" stroke="#888"/>`,
    );
    for (const n of peers) {
      parts.push(`<text x="${x(n)}" y="${H - PAD.b + 14}" text-anchor="middle">${n}</text>`);
    }
    parts.push(`<text x="${x0 + W / 2}" y="${H - 8}" text-anchor="middle">peers</text>`);
    for (const f of [0, 0.5, 1]) {
      const v = (yMax / 1.1) * f;
      parts.push(
        `<text x="${x0 + PAD.l - 4}" y="${y(v) + 4}" text-anchor="end">${
          v.toFixed(v < 10 ? 1 : 0)
        }${p.unit}</text>`,
      );
    }
    p.lines.forEach((l, j) => {
      const pts = rows.filter((r) => Number.isFinite(l.v(r))).map((r) => `${x(r.peers)},${y(l.v(r))}`);
      if (pts.length) {
        parts.push(`<polyline fill="none" stroke="${l.color}" stroke-width="2" points="${pts.join(" ")}"/>`);
      }
      for (const r of rows) {
        if (Number.isFinite(l.v(r))) {
          parts.push(`<circle cx="${x(r.peers)}" cy="${y(l.v(r))}" r="3" fill="${l.color}"/>`);
        }
      }
      parts.push(
        `<text x="${x0 + W - PAD.r}" y="${PAD.t + 12 + 14 * j}" text-anchor="end" fill="${l.color}">${
          esc(l.label)
        }</text>`,
      );
    });
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${3 * W}" height="${
    H + 16
  }" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="${(3 * W) / 2}" y="${H + 12}" text-anchor="middle" fill="#444">${esc(title)}</text>
${parts.join("\n")}
</svg>
`;
}
