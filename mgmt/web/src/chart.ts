// Live line charts as plain SVG: one sample a second, the last five
// minutes, kept in this page's memory. No chart library.

import { h, s, setText } from "./dom";

/** Ring is a fixed-size history of samples, oldest first. */
export class Ring {
  private buf: (number | null)[];
  private start = 0;
  len = 0;
  constructor(readonly cap: number) {
    this.buf = new Array<number | null>(cap).fill(null);
  }
  push(v: number | null): void {
    const i = (this.start + this.len) % this.cap;
    this.buf[i] = v;
    if (this.len < this.cap) this.len++;
    else this.start = (this.start + 1) % this.cap;
  }
  at(i: number): number | null {
    return this.buf[(this.start + i) % this.cap];
  }
  last(): number | null {
    return this.len ? this.at(this.len - 1) : null;
  }
}

/**
 * History keeps one ring per series, all on one clock: a series that
 * appears later starts with gaps, one that disappears gets gaps.
 */
export class History {
  private ticks = 0;
  private rings = new Map<string, Ring>();
  constructor(readonly cap = 300) {}

  record(values: Record<string, number | null>): void {
    for (const k of Object.keys(values)) {
      if (!this.rings.has(k)) {
        const r = new Ring(this.cap);
        for (let i = 0; i < Math.min(this.ticks, this.cap); i++) r.push(null);
        this.rings.set(k, r);
      }
    }
    this.ticks++;
    for (const [k, r] of this.rings) r.push(k in values ? values[k] : null);
  }

  get(k: string): Ring | undefined {
    return this.rings.get(k);
  }
}

export interface SeriesSpec {
  key: string;
  label: string;
}

export interface ChartOptions {
  id: string;
  title: string;
  fmt: (v: number) => string;
  area?: boolean; // fill under the first series
}

const W = 300; // one x unit per sample
const H = 100;

/** niceMax rounds up to 1, 2 or 5 times a power of ten. */
export function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

export class Chart {
  readonly el: HTMLElement;
  private svg: SVGSVGElement;
  private plot: SVGGElement;
  private legend: HTMLElement;
  private maxLabel: HTMLElement;
  private keys = "";
  private lines: { line: SVGPathElement; area?: SVGPathElement; value: HTMLElement }[] = [];

  constructor(private o: ChartOptions) {
    const grid = s("g", { class: "grid" });
    for (const y of [0, 25, 50, 75]) grid.append(s("line", { x1: 0, x2: W, y1: y, y2: y, "vector-effect": "non-scaling-stroke" }));
    this.plot = s("g", { class: "plot" });
    this.svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": o.title, focusable: "false" }, grid, this.plot);
    this.maxLabel = h("span", { class: "ymax", "aria-hidden": "true" });
    this.legend = h("ul", { class: "legend" });
    this.el = h(
      "figure",
      { class: "chart", id: o.id },
      h("figcaption", null, h("span", { class: "chart-title" }, o.title), this.legend),
      h("div", { class: "plotbox" }, this.maxLabel, this.svg),
      h("div", { class: "xaxis", "aria-hidden": "true" }, h("span", null, "−5 min"), h("span", null, "now")),
    );
  }

  draw(hist: History, series: SeriesSpec[]): void {
    const keys = series.map((x) => x.key + "\u0000" + x.label).join("\u0001");
    if (keys !== this.keys) this.rebuild(series);
    let max = 0;
    const rings = series.map((x) => hist.get(x.key));
    for (const r of rings) {
      if (!r) continue;
      for (let i = 0; i < r.len; i++) {
        const v = r.at(i);
        if (v !== null && v > max) max = v;
      }
    }
    const top = niceMax(max);
    setText(this.maxLabel, this.o.fmt(top));
    const summary: string[] = [];
    rings.forEach((r, i) => {
      const ln = this.lines[i];
      const d = r ? pathOf(r, top) : "";
      if (ln.line.getAttribute("d") !== d) ln.line.setAttribute("d", d);
      if (ln.area) ln.area.setAttribute("d", d ? areaOf(r!, top) : "");
      const last = r?.last() ?? null;
      const txt = last === null ? "–" : this.o.fmt(last);
      setText(ln.value, txt);
      summary.push(`${series[i].label} ${txt}`);
    });
    const first = rings[0]?.last();
    this.el.dataset.last = first === null || first === undefined ? "" : String(first);
    this.svg.setAttribute("aria-label", `${this.o.title}, last 5 minutes, scale 0 to ${this.o.fmt(top)}; now ${summary.join(", ")}`);
  }

  private rebuild(series: SeriesSpec[]): void {
    this.keys = series.map((x) => x.key + "\u0000" + x.label).join("\u0001");
    this.plot.replaceChildren();
    this.legend.replaceChildren();
    this.lines = series.map((x, i) => {
      const cls = `s${i % 8}`;
      let area: SVGPathElement | undefined;
      if (this.o.area && i === 0) {
        area = s("path", { class: `area ${cls}` });
        this.plot.append(area);
      }
      const line = s("path", { class: `line ${cls}`, "vector-effect": "non-scaling-stroke", "data-key": x.key });
      this.plot.append(line);
      const value = h("span", { class: "lv" });
      this.legend.append(h("li", null, h("span", { class: `sw ${cls}`, "aria-hidden": "true" }), h("span", { class: "ll" }, x.label), " ", value));
      return { line, area, value };
    });
  }
}

function y(v: number, top: number): string {
  return (H - (Math.min(v, top) / top) * (H - 2)).toFixed(2);
}

/** pathOf draws a ring right-aligned (the newest sample at the right edge), breaking at gaps. */
function pathOf(r: Ring, top: number): string {
  const off = W - r.len;
  let d = "";
  let pen = false;
  for (let i = 0; i < r.len; i++) {
    const v = r.at(i);
    if (v === null) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${off + i} ${y(v, top)}`;
    pen = true;
  }
  return d;
}

function areaOf(r: Ring, top: number): string {
  const off = W - r.len;
  let d = "";
  let runStart = -1;
  const close = (end: number) => {
    if (runStart >= 0) d += `L${off + end} ${H}L${off + runStart} ${H}Z`;
    runStart = -1;
  };
  for (let i = 0; i < r.len; i++) {
    const v = r.at(i);
    if (v === null) {
      close(i - 1);
      continue;
    }
    if (runStart < 0) {
      runStart = i;
      d += `M${off + i} ${H}L${off + i} ${y(v, top)}`;
    } else d += `L${off + i} ${y(v, top)}`;
  }
  close(r.len - 1);
  return d;
}
