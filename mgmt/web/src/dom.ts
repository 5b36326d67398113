// Small DOM helpers. Everything is built with createElement and
// textContent: no innerHTML, no inline styles (the CSP forbids them).

import type { Problem } from "./api";

type Attrs = Record<string, string | number | boolean | null | undefined>;
type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const svgNS = "http://www.w3.org/2000/svg";

export function s<K extends keyof SVGElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(svgNS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el: Element, attrs?: Attrs | null): void {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "number" ? String(c) : c);
  }
}

export function $(sel: string, root: ParentNode = document): HTMLElement {
  const el = root.querySelector<HTMLElement>(sel);
  if (!el) throw new Error(`missing element ${sel}`);
  return el;
}

/** setText changes an element's text only when it differs (no layout churn). */
export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

// ---- numbers ----

const prefixes = ["", "k", "M", "G", "T", "P"];

/** si formats n with an SI prefix and three significant digits: 12.3 k. */
export function si(n: number, unit = ""): string {
  if (!isFinite(n)) return "–";
  let i = 0;
  let v = Math.abs(n);
  while (v >= 999.5 && i < prefixes.length - 1) {
    v /= 1000;
    i++;
  }
  const digits = v >= 99.95 || i === 0 && Number.isInteger(v) ? 0 : v >= 9.995 ? 1 : 2;
  const out = (n < 0 ? "-" : "") + v.toFixed(digits);
  const p = prefixes[i];
  if (!unit) return p ? `${out} ${p}` : out;
  return `${out} ${p}${unit}`;
}

export const rate = (n: number | null, unit: string) => (n === null ? "–" : si(n, unit));
export const bits = (bytesPerSec: number | null) => (bytesPerSec === null ? "–" : si(bytesPerSec * 8, "bit/s"));

const intFmt = new Intl.NumberFormat("en-US");
export const int = (n: number) => intFmt.format(n);

export function pct(part: number, whole: number): string {
  if (!whole) return "–";
  const p = (100 * part) / whole;
  return (p > 0 && p < 0.1 ? "<0.1" : p.toFixed(p < 10 ? 1 : 0)) + " %";
}

export function duration(sec: number): string {
  sec = Math.max(0, Math.floor(sec));
  const d = Math.floor(sec / 86400), hh = Math.floor((sec % 86400) / 3600), m = Math.floor((sec % 3600) / 60), ss = sec % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${ss}s`;
  return `${ss}s`;
}

/** ago renders an RFC 3339 time as "3s ago" (empty for a zero time). */
export function ago(iso?: string): string {
  if (!iso) return "";
  const t = Date.parse(iso);
  if (!isFinite(t) || t <= 0) return "";
  const s = (Date.now() - t) / 1000;
  return s < 1 ? "just now" : `${duration(s)} ago`;
}

// ---- problems ----

/** problemNode shows a problem as the API wrote it: title, status, detail, field, value. */
export function problemNode(p: Problem): HTMLElement {
  const box = h("div", { class: "problem" });
  box.append(h("p", null, h("strong", { class: "problem-title" }, p.title), p.status ? ` (${p.status})` : "", p.detail ? ": " : "", p.detail ? h("span", { class: "problem-detail" }, p.detail) : null));
  const extra: Child[] = [];
  if (p.field) extra.push("field ", h("code", { class: "problem-field" }, p.field));
  if (p.value !== undefined && p.value !== "") extra.push(extra.length ? " · value " : "value ", h("code", null, p.value));
  if (p.restart_keys?.length) extra.push(extra.length ? " · " : "", "needs a restart: ", h("code", null, p.restart_keys.join(", ")));
  if (extra.length) box.append(h("p", { class: "problem-extra" }, ...extra));
  return box;
}

/** showProblem fills an alert region and marks the form control the problem names. */
export function showProblem(region: HTMLElement, p: Problem | null, form?: HTMLFormElement | null): void {
  region.replaceChildren();
  region.hidden = !p;
  if (form) for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  if (!p) return;
  region.append(problemNode(p));
  if (form && p.field) {
    const ctl = fieldControl(form, p.field);
    if (ctl) {
      ctl.setAttribute("aria-invalid", "true");
      ctl.setAttribute("aria-errormessage", region.id);
    }
  }
}

/** fieldControl finds the control for a field path: exact name, else its first segment. */
function fieldControl(form: HTMLFormElement, field: string): HTMLElement | null {
  const esc = (x: string) => x.replace(/["\\]/g, "\\$&");
  const exact = form.querySelector<HTMLElement>(`[name="${esc(field)}"]`);
  if (exact) return exact;
  const first = field.split(/[.[]/)[0];
  return first ? form.querySelector<HTMLElement>(`[name="${esc(first)}"]`) : null;
}
