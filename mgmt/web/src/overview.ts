// Overview: rates computed from GET /api/v1/stats once a second, drawn as
// five-minute charts, plus the current figures and by-reason tables.

import type { Stats, Totals, SocketStats } from "./api";
import { Chart, History } from "./chart";
import { bits, duration, h, int, pct, rate, setText, si } from "./dom";
import { syncRows, table } from "./table";

interface Sample {
  st: Stats;
  t: number; // performance.now() at arrival
}

const pps = (v: number) => si(v, "pps");
const per = (v: number) => si(v, "/s");

/** ringDrops are a socket's frames lost at its rings. */
const ringDrops = (s: SocketStats) => (s.rx_dropped ?? 0) + (s.rx_ring_full ?? 0);

export class Overview {
  private hist = new History(300);
  private prev: Sample | null = null;
  private tiles = new Map<string, HTMLElement>();
  private charts: Record<string, Chart>;
  private dropsT = table("Drops by reason", ["Reason", "Per second", "Since start"]);
  private passesT = table("Passes to the kernel by reason", ["Reason", "Per second", "Since start"]);
  private workersT = table("Per-worker load", ["Worker", "Rx packets/s", "Tx packets/s", "New flows/s", "Drops/s", "Share of rx"]);
  private socketsT = table("AF_XDP sockets", ["Socket", "Mode", "Rx packets/s", "Ring drops/s", "Rx dropped", "Rx ring full", "Fill ring empty", "Rx invalid", "Tx invalid", "Tx ring empty"]);
  private runnersLine = h("p", { class: "note" });
  private meta = h("p", { class: "note", id: "ov-meta" });
  private firstDrawn = false;

  constructor(root: HTMLElement) {
    const tiles = h("div", { class: "tiles", role: "list" });
    for (const [k, label] of [
      ["rx_pps", "Packets in"],
      ["tx_pps", "Packets out"],
      ["rx_bps", "Traffic in"],
      ["tx_bps", "Traffic out"],
      ["new_flows", "New flows"],
      ["drops", "Drops"],
      ["passes", "Passes"],
      ["conntrack", "Connection table"],
    ] as const) {
      const v = h("span", { class: "tile-value", id: `now-${k}` }, "–");
      const sub = h("span", { class: "tile-sub" });
      this.tiles.set(k, v);
      this.tiles.set(k + ":sub", sub);
      tiles.append(h("div", { class: "tile", role: "listitem" }, h("span", { class: "tile-label" }, label), v, sub));
    }
    this.charts = {
      pps: new Chart({ id: "chart-pps", title: "Packets per second", fmt: pps, area: true }),
      bps: new Chart({ id: "chart-bps", title: "Bits per second", fmt: (v) => si(v, "bit/s"), area: true }),
      flows: new Chart({ id: "chart-flows", title: "New flows per second", fmt: per, area: true }),
      dp: new Chart({ id: "chart-drops", title: "Drops and passes per second", fmt: pps }),
      ct: new Chart({ id: "chart-conntrack", title: "Connection-table entries", fmt: (v) => si(v), area: true }),
      workers: new Chart({ id: "chart-workers", title: "Per-worker rx packets per second", fmt: pps }),
      sockets: new Chart({ id: "chart-sockets", title: "Socket ring drops per second", fmt: pps }),
    };
    const charts = h("div", { class: "charts" }, ...Object.values(this.charts).map((c) => c.el));
    root.append(
      h("h2", { tabindex: "-1" }, "Overview"),
      this.meta,
      tiles,
      charts,
      h("div", { class: "tables" }, this.dropsT.wrap, this.passesT.wrap, h("div", { class: "span-all" }, this.workersT.wrap), h("div", { class: "span-all" }, this.socketsT.wrap, this.runnersLine)),
    );
  }

  /** update takes one stats sample; the first only sets the baseline for rates. */
  update(st: Stats): void {
    const now = performance.now();
    const p = this.prev;
    let dt = 0;
    if (p) {
      dt = st.uptime_seconds - p.st.uptime_seconds;
      if (!(dt > 0.05 && dt < 120)) dt = st.uptime_seconds < p.st.uptime_seconds ? 0 : (now - p.t) / 1000;
    }
    const ok = p !== null && dt > 0;
    const r = (a: number | undefined, b: number | undefined): number | null => (ok ? Math.max(0, (a ?? 0) - (b ?? 0)) / dt : null);
    const T = st.totals, P = p?.st.totals;
    const v: Record<string, number | null> = {
      rx_pps: r(T.rx_packets, P?.rx_packets),
      tx_pps: r(T.tx_packets, P?.tx_packets),
      rx_bps: ok ? (r(T.rx_bytes, P?.rx_bytes) ?? 0) * 8 : null,
      tx_bps: ok ? (r(T.tx_bytes, P?.tx_bytes) ?? 0) * 8 : null,
      new_flows: r(T.new_flows, P?.new_flows),
      drops: r(T.dropped, P?.dropped),
      passes: r(T.passed, P?.passed),
      ct: st.conntrack.entries,
    };
    const workers = st.per_worker ?? [];
    const pw = p?.st.per_worker ?? [];
    workers.forEach((w, i) => (v[`w${i}`] = r(w.rx_packets, pw[i]?.rx_packets)));
    const socks = Object.keys(st.sockets ?? {}).sort();
    for (const k of socks) {
      const a = st.sockets![k], b = p?.st.sockets?.[k];
      v[`sock:${k}`] = r(ringDrops(a), b ? ringDrops(b) : undefined);
    }
    this.hist.record(v);
    this.prev = { st, t: now };

    // current figures
    this.tile("rx_pps", rate(v.rx_pps, "pps"), `${int(T.rx_packets)} since start`);
    this.tile("tx_pps", rate(v.tx_pps, "pps"), `${int(T.tx_packets)} since start`);
    this.tile("rx_bps", bits(v.rx_bps === null ? null : v.rx_bps / 8), `${si(T.rx_bytes, "B")} since start`);
    this.tile("tx_bps", bits(v.tx_bps === null ? null : v.tx_bps / 8), `${si(T.tx_bytes, "B")} since start`);
    this.tile("new_flows", rate(v.new_flows, "/s"), `${int(T.new_flows)} since start`);
    this.tile("drops", rate(v.drops, "pps"), `${int(T.dropped)} since start`);
    this.tile("passes", rate(v.passes, "pps"), `${int(T.passed)} since start`);
    this.tile("conntrack", pct(st.conntrack.entries, st.conntrack.capacity), `${int(st.conntrack.entries)} of ${int(st.conntrack.capacity)} entries`);
    setText(
      this.meta,
      `Up ${duration(st.uptime_seconds)} · configuration generation ${st.generation} · ${st.workers} worker${st.workers === 1 ? "" : "s"}, ${socks.length} AF_XDP socket${socks.length === 1 ? "" : "s"} · one sample a second, the last 5 minutes kept in this page`,
    );

    // charts
    this.charts.pps.draw(this.hist, [
      { key: "rx_pps", label: "in" },
      { key: "tx_pps", label: "out" },
    ]);
    this.charts.bps.draw(this.hist, [
      { key: "rx_bps", label: "in" },
      { key: "tx_bps", label: "out" },
    ]);
    this.charts.flows.draw(this.hist, [{ key: "new_flows", label: "new flows" }]);
    this.charts.dp.draw(this.hist, [
      { key: "drops", label: "drops" },
      { key: "passes", label: "passes" },
    ]);
    this.charts.ct.draw(this.hist, [{ key: "ct", label: `entries (capacity ${si(st.conntrack.capacity)})` }]);
    this.charts.workers.draw(this.hist, workers.map((_, i) => ({ key: `w${i}`, label: `worker ${i}` })));
    this.charts.sockets.draw(this.hist, socks.map((k) => ({ key: `sock:${k}`, label: k })));

    // tables
    this.reasons(this.dropsT, st.drops, p?.st.drops, dt, ok, "No drops since start.");
    this.reasons(this.passesT, st.passes, p?.st.passes, dt, ok, "Nothing passed to the kernel since start.");
    const rxAll = workers.reduce((a, _, i) => a + (v[`w${i}`] ?? 0), 0);
    const hdrW = ["Worker", "Rx packets/s", "Tx packets/s", "New flows/s", "Drops/s", "Share of rx"];
    syncRows(
      this.workersT.body,
      hdrW,
      workers.map((w: Totals, i) => ({
        key: String(i),
        cells: [
          `worker ${i}`,
          rate(v[`w${i}`], "pps"),
          rate(r(w.tx_packets, pw[i]?.tx_packets), "pps"),
          rate(r(w.new_flows, pw[i]?.new_flows), "/s"),
          rate(r(w.dropped, pw[i]?.dropped), "pps"),
          ok ? pct(v[`w${i}`] ?? 0, rxAll) : "–",
        ],
      })),
    );
    const hdrS = ["Socket", "Mode", "Rx packets/s", "Ring drops/s", "Rx dropped", "Rx ring full", "Fill ring empty", "Rx invalid", "Tx invalid", "Tx ring empty"];
    syncRows(
      this.socketsT.body,
      hdrS,
      socks.map((k) => {
        const a = st.sockets![k], b = p?.st.sockets?.[k];
        return {
          key: k,
          cls: ringDrops(a) > 0 ? "warn" : "",
          cells: [k, a.mode, rate(r(a.rx_packets, b?.rx_packets), "pps"), rate(v[`sock:${k}`], "pps"), int(a.rx_dropped), int(a.rx_ring_full), int(a.rx_fill_ring_empty_descs), int(a.rx_invalid_descs), int(a.tx_invalid_descs), int(a.tx_ring_empty_descs)],
        };
      }),
    );
    this.socketsT.empty.hidden = socks.length > 0;
    setText(this.socketsT.empty, "No AF_XDP sockets.");
    const rn = st.runners;
    setText(this.runnersLine, rn ? `I/O loops: ${int(rn.tx_dropped)} tx dropped, ${int(rn.pass_dropped)} pass dropped, ${int(rn.fill_starved)} fill starved, ${int(rn.rx_batches)} rx batches.` : "");
    if (!this.firstDrawn) {
      this.firstDrawn = true;
      performance.mark("xlb-first-data");
    }
  }

  private tile(k: string, value: string, sub: string): void {
    setText(this.tiles.get(k)!, value);
    setText(this.tiles.get(k + ":sub")!, sub);
  }

  private reasons(t: ReturnType<typeof table>, cur: Record<string, number> | null, prev: Record<string, number> | null | undefined, dt: number, ok: boolean, none: string): void {
    const rows = Object.entries(cur ?? {})
      .filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .map(([k, n]) => ({ key: k, cells: [k, ok ? si(Math.max(0, n - (prev?.[k] ?? 0)) / dt, "pps") : "–", int(n)] }));
    syncRows(t.body, ["Reason", "Per second", "Since start"], rows);
    t.empty.hidden = rows.length > 0;
    setText(t.empty, none);
  }
}
