// Services and their backends (GET /api/v1/services), with the changes an
// operator makes from here: add/remove a service or a backend, drain,
// enable, disable, weight. Destructive ones ask first.

import { api, ApiError, backendKey, type BackendView, type ServiceView } from "./api";
import { ago, h, int, rate, setText, showProblem } from "./dom";

export interface UI {
  confirm(title: string, body: string, action: string): Promise<boolean>;
  announce(msg: string): void;
}

let uid = 0;
const nextId = (p: string) => `${p}-${++uid}`;

function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id || (control.id = nextId("f"));
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("small", null, hint) : null);
}

function input(name: string, attrs: Record<string, string | boolean> = {}): HTMLInputElement {
  return h("input", { name, type: "text", autocomplete: "off", spellcheck: "false", ...attrs });
}

function select(name: string, options: string[], value?: string): HTMLSelectElement {
  const el = h("select", { name }, ...options.map((o) => h("option", { value: o, selected: o === value }, o)));
  return el;
}

/** num turns a form value into a JSON number; text that is not one is sent as written, so the API names it. */
function num(v: FormDataEntryValue | null): number | string | undefined {
  const s = String(v ?? "").trim();
  if (s === "") return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : s;
}

function str(v: FormDataEntryValue | null): string | undefined {
  const s = String(v ?? "").trim();
  return s === "" ? undefined : s;
}

/** parseBackends reads "address[:port] [weight] [state]" lines; [v6]:port for IPv6 with a port. */
export function parseBackends(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) continue;
    const [ap, weight, state] = line.split(/[\s,]+/);
    let address = ap;
    let port: number | string | undefined;
    let m = /^\[([^\]]+)\]:(.*)$/.exec(ap);
    if (m) [address, port] = [m[1], num(m[2])];
    else if ((m = /^([^:]+):(.*)$/.exec(ap))) [address, port] = [m[1], num(m[2])];
    const b: Record<string, unknown> = { address };
    if (port !== undefined) b.port = port;
    if (weight !== undefined) b.weight = num(weight);
    if (state !== undefined) b.state = state;
    out.push(b);
  }
  return out;
}

interface Row {
  tr: HTMLTableRowElement;
  health: HTMLElement;
  last: HTMLElement;
  weight: HTMLInputElement;
  state: HTMLElement;
  flows: HTMLElement;
  pps: HTMLElement;
  actions: HTMLElement;
}

interface Card {
  el: HTMLElement;
  meta: HTMLElement;
  stats: HTMLElement;
  alldown: HTMLElement;
  err: HTMLElement;
  body: HTMLTableSectionElement;
  rows: Map<string, Row>;
}

const headers = ["Backend", "Health", "Last check", "Weight", "State", "Flows", "Packets/s", "Actions"];

export class Services {
  private list = h("div", { class: "svc-list" });
  private empty = h("p", { class: "empty", hidden: true }, "No services yet: add one below.");
  private cards = new Map<string, Card>();
  private prev = new Map<string, { packets: number; t: number; rate: number | null }>();
  private inflight: Promise<void> | null = null;
  private again = false;
  names: string[] = [];
  onNames: ((s: ServiceView[]) => void) | null = null;

  constructor(root: HTMLElement, private ui: UI) {
    root.append(h("h2", { tabindex: "-1" }, "Services"), this.empty, this.list, this.addServiceForm());
    root.addEventListener("click", (e) => {
      const b = (e.target as Element).closest<HTMLButtonElement>("button[data-action]");
      if (b) void this.action(b);
    });
    root.addEventListener("submit", (e) => {
      const f = e.target as HTMLFormElement;
      e.preventDefault();
      if (f.classList.contains("weight-form")) void this.setWeight(f);
      else if (f.classList.contains("add-backend")) void this.addBackend(f);
      else if (f.classList.contains("add-service")) void this.addService(f);
    });
  }

  /** refresh reads the services; one asked for during a read runs right after it. */
  refresh(): Promise<void> {
    if (this.inflight) {
      this.again = true;
      return this.inflight;
    }
    this.inflight = (async () => {
      try {
        do {
          this.again = false;
          this.render(await api.services());
        } while (this.again);
      } finally {
        this.inflight = null;
      }
    })();
    return this.inflight;
  }

  render(svcs: ServiceView[]): void {
    const now = performance.now();
    this.names = svcs.map((s) => s.name);
    this.onNames?.(svcs);
    this.empty.hidden = svcs.length > 0;
    const seen = new Set<string>();
    let prevEl: Element | null = null;
    for (const svc of svcs) {
      seen.add(svc.name);
      let c = this.cards.get(svc.name);
      if (!c) {
        c = this.card(svc);
        this.cards.set(svc.name, c);
      }
      this.fillCard(c, svc, now);
      const want: Element | null = prevEl ? prevEl.nextElementSibling : this.list.firstElementChild;
      if (want !== c.el) this.list.insertBefore(c.el, want);
      prevEl = c.el;
    }
    for (const [name, c] of this.cards) {
      if (!seen.has(name)) {
        c.el.remove();
        this.cards.delete(name);
      }
    }
  }

  private card(svc: ServiceView): Card {
    const body = h("tbody");
    const err = h("div", { class: "err", role: "alert", id: nextId("err"), hidden: true });
    const meta = h("p", { class: "svc-meta" });
    const stats = h("p", { class: "svc-stats" });
    const alldown = h("p", { class: "alldown", hidden: true });
    const hid = nextId("svc");
    const el = h(
      "article",
      { class: "svc", "data-svc": svc.name, "aria-labelledby": hid },
      h(
        "header",
        null,
        h("h3", { id: hid }, svc.name),
        h("button", { type: "button", class: "danger", "data-action": "remove-service", "data-svc": svc.name, "aria-label": `Remove service ${svc.name}` }, "Remove service"),
      ),
      meta,
      stats,
      alldown,
      err,
      h(
        "div",
        { class: "table-wrap", tabindex: "0", role: "region", "aria-label": `Backends of ${svc.name}` },
        h(
          "table",
          { class: "backends" },
          h("caption", { class: "sr-only" }, `Backends of ${svc.name}`),
          h("thead", null, h("tr", null, ...headers.map((x) => h("th", { scope: "col" }, x)))),
          body,
        ),
      ),
      this.addBackendForm(svc.name),
    );
    return { el, meta, stats, alldown, err, body, rows: new Map() };
  }

  private fillCard(c: Card, svc: ServiceView, now: number): void {
    const proto = svc.protocol || "tcp";
    const hc = svc.health;
    const health =
      hc?.type && hc.type !== "none"
        ? `${hc.type} check${hc.path ? " " + hc.path : ""} every ${hc.interval || "2s"} (fall ${hc.fall ?? 3}, rise ${hc.rise ?? 2})`
        : "no health check";
    const vip = svc.vip.includes(":") ? `[${svc.vip}]` : svc.vip;
    setMeta(c.meta, [
      ["mode", svc.mode || "dsr"],
      ["VIP", `${vip}:${svc.port || "*"}/${proto}`],
      ["scheduler", svc.scheduler || "maglev"],
      ["health", health],
      ...(svc.mode === "l3dsr" ? [["DSCP", String(svc.dscp ?? 0)] as [string, string]] : []),
    ]);
    const pr = this.pps(`${svc.name}`, svc.counters?.packets ?? 0, now);
    setText(c.stats, `${int(svc.counters?.flows ?? 0)} flows · ${rate(pr, "pps")} · ${int(svc.counters?.new_flows ?? 0)} new flows since start`);
    c.alldown.hidden = !svc.all_backends_down;
    setText(c.alldown, svc.all_backends_down ? `⚠ Every backend is down by health check: all_down is ${svc.all_down || "serve"}, so new flows are ${svc.all_down === "drop" ? "dropped" : "still spread over all of them"}.` : "");

    const seen = new Set<string>();
    let prevTr: HTMLTableRowElement | null = null;
    for (const b of svc.backends ?? []) {
      const key = backendKey(b);
      seen.add(key);
      let r = c.rows.get(key);
      if (!r) {
        r = this.row(svc.name, key);
        c.rows.set(key, r);
      }
      this.fillRow(r, svc.name, key, b, now);
      const want: ChildNode | null = prevTr ? prevTr.nextSibling : c.body.firstChild;
      if (want !== r.tr) c.body.insertBefore(r.tr, want);
      prevTr = r.tr;
    }
    for (const [k, r] of c.rows) {
      if (!seen.has(k)) {
        r.tr.remove();
        c.rows.delete(k);
      }
    }
  }

  /** pps is a counter's rate since the last poll at least half a second ago. */
  private pps(k: string, packets: number, now: number): number | null {
    const p = this.prev.get(k);
    if (p && now - p.t < 500) return p.rate;
    const r = p ? Math.max(0, packets - p.packets) / ((now - p.t) / 1000) : null;
    this.prev.set(k, { packets, t: now, rate: r });
    return r;
  }

  private row(svc: string, key: string): Row {
    const td = (i: number, ...c: (Node | string)[]) => h("td", { "data-label": headers[i] }, ...c);
    const weight = h("input", { type: "number", name: "weight", min: "0", step: "1", inputmode: "numeric", "aria-label": `Weight of ${key}` });
    weight.addEventListener("input", () => (weight.dataset.dirty = "1"));
    const health = h("span", { class: "health" });
    const last = h("span", { class: "last" });
    const state = h("span", { class: "state" });
    const flows = h("span");
    const pps = h("span");
    const actions = h("div", { class: "actions" });
    const tr = h(
      "tr",
      { "data-key": key },
      h("th", { scope: "row", "data-label": headers[0] }, h("code", null, key)),
      td(1, health),
      td(2, last),
      td(3, h("form", { class: "weight-form", "data-svc": svc, "data-key": key }, weight, h("button", { type: "submit", "aria-label": `Set weight of ${key}` }, "Set"))),
      td(4, state),
      td(5, flows),
      td(6, pps),
      td(7, actions),
    );
    return { tr, health, last, weight, state, flows, pps, actions };
  }

  private fillRow(r: Row, svc: string, key: string, b: BackendView, now: number): void {
    const hv = b.health;
    const hs = hv?.state ?? "unknown";
    const icon = hs === "up" ? "✔" : hs === "down" ? "✖" : "?";
    r.health.className = `health health-${hs}`;
    setText(r.health, `${icon} ${hs}`);
    r.health.title = hv?.since ? `${hs} since ${new Date(hv.since).toLocaleString()}` : "";
    let last: string;
    if (!hv || !hv.checked) last = hv?.last_result || "no health check";
    else {
      const parts = [hv.last_result || (hv.last_check ? "" : "not checked yet")];
      if (hv.last_error && hv.last_error !== hv.last_result) parts.push(hv.last_error);
      if (hv.latency_ms) parts.push(`${hv.latency_ms < 10 ? hv.latency_ms.toFixed(2) : hv.latency_ms.toFixed(0)} ms`);
      if (hv.last_check) parts.push(ago(hv.last_check));
      if (hv.held_until && Date.parse(hv.held_until) > Date.now()) parts.push(`held down until ${new Date(hv.held_until).toLocaleTimeString()}`);
      last = parts.filter(Boolean).join(" · ");
    }
    r.last.className = `last last-${hs}`;
    setText(r.last, last);
    const w = String(b.weight ?? 100);
    if (document.activeElement !== r.weight && r.weight.dataset.dirty !== "1" && r.weight.value !== w) r.weight.value = w;
    const st = b.state || "active";
    r.state.className = `state state-${st}`;
    setText(r.state, st);
    setText(r.flows, int(b.flows ?? 0));
    setText(r.pps, rate(this.pps(`${svc}\u0000${key}`, b.counters?.packets ?? 0, now), "pps"));
    r.tr.className = `be-${hs} be-${st}`;
    if (r.actions.dataset.state !== st) {
      r.actions.dataset.state = st;
      const btn = (action: string, label: string, cls = "") =>
        h("button", { type: "button", class: cls || null, "data-action": action, "data-svc": svc, "data-key": key, "aria-label": `${label} ${key} of ${svc}` }, label);
      r.actions.replaceChildren(
        ...[
          st === "active" ? btn("drain", "Drain", "warn") : btn("enable", "Enable"),
          st !== "disabled" ? btn("disable", "Disable", "warn") : null,
          btn("remove-backend", "Remove", "danger"),
        ].filter((x): x is HTMLButtonElement => x !== null),
      );
    }
  }

  private cardErr(svc: string): { c?: Card; err: HTMLElement | null } {
    const c = this.cards.get(svc);
    return { c, err: c?.err ?? null };
  }

  private async action(b: HTMLButtonElement): Promise<void> {
    const { action, svc = "", key = "" } = b.dataset;
    const { err } = this.cardErr(svc);
    const run = async (what: () => Promise<unknown>, done: string) => {
      b.disabled = true;
      try {
        await what();
        if (err) showProblem(err, null);
        this.ui.announce(done);
        await this.refresh();
      } catch (e) {
        if (e instanceof ApiError && err) showProblem(err, e.problem);
        else throw e;
      } finally {
        b.disabled = false;
      }
    };
    switch (action) {
      case "drain":
        if (await this.ui.confirm(`Drain ${key}?`, `Backend ${key} of ${svc} gets no new flows; its established flows stay until they end.`, "Drain"))
          await run(() => api.patchBackend(svc, key, { state: "draining" }), `${key} of ${svc} is draining`);
        break;
      case "disable":
        if (await this.ui.confirm(`Disable ${key}?`, `Backend ${key} of ${svc} takes no traffic at all: its established flows are moved to other backends.`, "Disable"))
          await run(() => api.patchBackend(svc, key, { state: "disabled" }), `${key} of ${svc} is disabled`);
        break;
      case "enable":
        await run(() => api.patchBackend(svc, key, { state: "active" }), `${key} of ${svc} is active`);
        break;
      case "remove-backend":
        if (await this.ui.confirm(`Remove ${key} from ${svc}?`, `Backend ${key} leaves service ${svc}; its flows are moved to other backends.`, "Remove backend"))
          await run(() => api.deleteBackend(svc, key), `${key} removed from ${svc}`);
        break;
      case "remove-service": {
        const c = this.cards.get(svc);
        if (await this.ui.confirm(`Remove service ${svc}?`, `Service ${svc} and its ${c?.rows.size ?? 0} backends are removed; its VIP:port is no longer load-balanced and its flows end.`, "Remove service"))
          await run(() => api.deleteService(svc), `service ${svc} removed`);
        break;
      }
    }
  }

  private async setWeight(f: HTMLFormElement): Promise<void> {
    const { svc = "", key = "" } = f.dataset;
    const inp = f.querySelector<HTMLInputElement>("input[name=weight]")!;
    const { err } = this.cardErr(svc);
    const w = num(inp.value);
    try {
      await api.patchBackend(svc, key, { weight: w as number });
      delete inp.dataset.dirty;
      if (err) showProblem(err, null);
      this.ui.announce(`weight of ${key} set to ${inp.value}`);
      await this.refresh();
    } catch (e) {
      if (e instanceof ApiError && err) showProblem(err, e.problem);
      else throw e;
    }
  }

  private addBackendForm(svc: string): HTMLElement {
    const err = h("div", { class: "err", role: "alert", id: nextId("err"), hidden: true });
    const f = h(
      "form",
      { class: "add-backend grid-form", "data-svc": svc, "aria-label": `Add a backend to ${svc}` },
      field("Address", input("address", { placeholder: "10.0.0.11" })),
      field("Port", input("port", { inputmode: "numeric", placeholder: "service port" })),
      field("Weight", input("weight", { inputmode: "numeric", placeholder: "100" })),
      field("State", select("state", ["active", "draining", "disabled"], "active")),
      h("div", { class: "field submit" }, h("button", { type: "submit", class: "primary" }, "Add backend")),
      err,
    );
    return h("details", { class: "add" }, h("summary", null, "Add a backend"), f);
  }

  private async addBackend(f: HTMLFormElement): Promise<void> {
    const svc = f.dataset.svc ?? "";
    const fd = new FormData(f);
    const err = f.querySelector<HTMLElement>(".err")!;
    const b: Record<string, unknown> = { address: str(fd.get("address")) ?? "" };
    const port = num(fd.get("port")), weight = num(fd.get("weight"));
    if (port !== undefined) b.port = port;
    if (weight !== undefined) b.weight = weight;
    if (fd.get("state") !== "active") b.state = fd.get("state");
    const btn = f.querySelector<HTMLButtonElement>("button[type=submit]")!;
    btn.disabled = true;
    try {
      const made = await api.addBackend(svc, b);
      showProblem(err, null, f);
      f.reset();
      this.ui.announce(`backend ${backendKey(made)} added to ${svc}`);
      await this.refresh();
    } catch (e) {
      if (e instanceof ApiError) showProblem(err, e.problem, f);
      else throw e;
    } finally {
      btn.disabled = false;
    }
  }

  private addServiceForm(): HTMLElement {
    const err = h("div", { class: "err", role: "alert", id: nextId("err"), hidden: true });
    const backends = h("textarea", { name: "backends", rows: "4", spellcheck: "false", placeholder: "10.0.0.11:80 100\n10.0.0.12:80 100" });
    const f = h(
      "form",
      { class: "add-service grid-form", "aria-label": "Add a service" },
      field("Name", input("name", { required: true, placeholder: "web" })),
      field("VIP", input("vip", { required: true, placeholder: "198.51.100.10" })),
      field("Port", input("port", { inputmode: "numeric", placeholder: "80" }), "Empty or 0: every port."),
      field("Protocol", select("protocol", ["tcp", "udp"], "tcp")),
      field("Mode", select("mode", ["dsr", "tunnel", "l3dsr", "nat", "fullnat"], "dsr")),
      field("Scheduler", select("scheduler", ["maglev", "rr", "wrr", "lc", "wlc", "sh"], "maglev")),
      field("DSCP (l3dsr)", input("dscp", { inputmode: "numeric", placeholder: "0" })),
      field("Health check", select("health.type", ["none", "tcp", "http", "https", "udp"], "none")),
      field("Check interval", input("health.interval", { placeholder: "2s" })),
      field("Check timeout", input("health.timeout", { placeholder: "1s" })),
      field("HTTP path", input("health.path", { placeholder: "/healthz" })),
      field("Fall", input("health.fall", { inputmode: "numeric", placeholder: "3" })),
      field("Rise", input("health.rise", { inputmode: "numeric", placeholder: "2" })),
      h("div", { class: "field wide" }, h("label", { for: (backends.id = nextId("f")) }, "Backends"), backends, h("small", null, "One a line: address[:port] [weight] [state]; [IPv6]:port.")),
      h("div", { class: "field submit" }, h("button", { type: "submit", class: "primary" }, "Add service")),
      err,
    );
    return h("section", { class: "add-service-box", "aria-labelledby": "add-svc-h" }, h("details", { class: "add" }, h("summary", { id: "add-svc-h" }, "Add a service"), f));
  }

  private async addService(f: HTMLFormElement): Promise<void> {
    const fd = new FormData(f);
    const err = f.querySelector<HTMLElement>(".err")!;
    const svc: Record<string, unknown> = {
      name: str(fd.get("name")) ?? "",
      vip: str(fd.get("vip")) ?? "",
      port: num(fd.get("port")) ?? 0,
      protocol: fd.get("protocol"),
      mode: fd.get("mode"),
      scheduler: fd.get("scheduler"),
    };
    const dscp = num(fd.get("dscp"));
    if (dscp !== undefined) svc.dscp = dscp;
    const ht = String(fd.get("health.type"));
    if (ht !== "none") {
      const hc: Record<string, unknown> = { type: ht };
      for (const k of ["interval", "timeout", "path"]) {
        const v = str(fd.get(`health.${k}`));
        if (v !== undefined) hc[k] = v;
      }
      for (const k of ["fall", "rise"]) {
        const v = num(fd.get(`health.${k}`));
        if (v !== undefined) hc[k] = v;
      }
      svc.health = hc;
    }
    svc.backends = parseBackends(String(fd.get("backends") ?? ""));
    const btn = f.querySelector<HTMLButtonElement>("button[type=submit]")!;
    btn.disabled = true;
    try {
      const made = await api.addService(svc);
      showProblem(err, null, f);
      f.reset();
      this.ui.announce(`service ${made.name} added`);
      await this.refresh();
    } catch (e) {
      if (e instanceof ApiError) showProblem(err, e.problem, f);
      else throw e;
    } finally {
      btn.disabled = false;
    }
  }
}

function setMeta(el: HTMLElement, items: [string, string][]): void {
  const key = items.map((x) => x.join("=")).join(";");
  if (el.dataset.k === key) return;
  el.dataset.k = key;
  el.replaceChildren(...items.flatMap(([k, v], i) => [i ? " · " : "", h("span", { class: "mk" }, k), " ", h("code", null, v)]));
}
