// Flow lookup (GET /api/v1/lookup: the real pipeline's decision for a
// synthesised packet) and a sample of the connection table
// (GET /api/v1/flows).

import { api, ApiError, type ServiceView } from "./api";
import { h, setText, showProblem } from "./dom";
import { syncRows, table } from "./table";

let n = 0;
const id = (p: string) => `${p}-flows-${++n}`;

function labelled(label: string, control: HTMLElement): HTMLElement {
  control.id = id("f");
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control);
}

const flowHeaders = ["Client", "Service", "Protocol", "VIP", "Backend", "State", "SNAT"];

export class Flows {
  private svcSelect = h("select", { name: "service" }, h("option", { value: "" }, "every service"));
  private dst = h("input", { name: "dst", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "198.51.100.10:80" });
  private result = h("div", { class: "lookup-result", "aria-live": "polite" });
  private flowsT = table("Connection-table sample", flowHeaders, "flows");
  private count = h("p", { class: "note", "aria-live": "polite" });
  private lookupErr = h("div", { class: "err", role: "alert", id: id("err"), hidden: true });
  private flowsErr = h("div", { class: "err", role: "alert", id: id("err"), hidden: true });
  private loaded = false;

  constructor(root: HTMLElement) {
    const lookup = h(
      "form",
      { class: "lookup grid-form", "aria-labelledby": "lookup-h" },
      labelled("Protocol", h("select", { name: "protocol" }, h("option", { value: "tcp" }, "tcp"), h("option", { value: "udp" }, "udp"))),
      labelled("Source", h("input", { name: "src", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "203.0.113.7:40000", required: true })),
      labelled("Destination", this.dst),
      h("div", { class: "field submit" }, h("button", { type: "submit", class: "primary" }, "Look up")),
      this.lookupErr,
    );
    lookup.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.lookup(lookup);
    });
    const sample = h(
      "form",
      { class: "sample grid-form", "aria-labelledby": "sample-h" },
      labelled("Service", this.svcSelect),
      labelled("Limit", h("input", { name: "limit", type: "number", min: "1", max: "10000", value: "50", inputmode: "numeric" })),
      h("div", { class: "field submit" }, h("button", { type: "submit", class: "primary" }, "Show flows")),
      this.flowsErr,
    );
    sample.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.sample(sample);
    });
    root.append(
      h("h2", { tabindex: "-1" }, "Flows"),
      h(
        "section",
        { class: "panel" },
        h("h3", { id: "lookup-h" }, "Flow lookup"),
        h("p", { class: "note" }, "Which backend the real pipeline picks for a packet from source to destination, and why. Nothing is sent."),
        lookup,
        this.result,
      ),
      h("section", { class: "panel" }, h("h3", { id: "sample-h" }, "Connection table"), sample, this.count, this.flowsT.wrap),
    );
    this.flowsT.wrap.hidden = true;
  }

  /** setServices fills the service choice and a destination example. */
  setServices(svcs: ServiceView[]): void {
    const want = ["", ...svcs.map((s) => s.name)];
    const have = Array.from(this.svcSelect.options).map((o) => o.value);
    if (want.join("\n") !== have.join("\n")) {
      const cur = this.svcSelect.value;
      this.svcSelect.replaceChildren(h("option", { value: "" }, "every service"), ...svcs.map((s) => h("option", { value: s.name, selected: s.name === cur }, s.name)));
    }
    if (svcs[0]) {
      const v = svcs[0].vip.includes(":") ? `[${svcs[0].vip}]` : svcs[0].vip;
      this.dst.placeholder = `${v}:${svcs[0].port || 80}`;
    }
  }

  /** shown runs when the view opens: the first time it loads a sample. */
  shown(): void {
    if (!this.loaded) {
      this.loaded = true;
      const f = this.svcSelect.form;
      if (f) void this.sample(f);
    }
  }

  private async lookup(f: HTMLFormElement): Promise<void> {
    const fd = new FormData(f);
    try {
      const r = await api.lookup(String(fd.get("protocol")), String(fd.get("src")).trim(), String(fd.get("dst")).trim());
      showProblem(this.lookupErr, null, f);
      const dd = (k: string, v: string | Node) => [h("dt", null, k), h("dd", null, v)];
      this.result.replaceChildren(
        h(
          "dl",
          { class: `decision action-${r.action}` },
          ...dd("Action", r.action),
          ...(r.service ? dd("Service", r.service) : []),
          ...(r.mode ? dd("Mode", r.mode) : []),
          ...dd("Backend", r.backend ? h("code", null, r.backend) : "none"),
          ...dd("Flow", r.existing ? "existing: in the connection table" : "new: not in the connection table"),
          ...(r.reason ? dd("Reason", r.reason) : []),
          ...dd("Why", r.why),
        ),
      );
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      this.result.replaceChildren();
      showProblem(this.lookupErr, e.problem, f);
    }
  }

  private async sample(f: HTMLFormElement): Promise<void> {
    const fd = new FormData(f);
    const limit = Number(fd.get("limit")) || 50;
    const svc = String(fd.get("service") ?? "");
    try {
      const flows = await api.flows(svc, limit);
      showProblem(this.flowsErr, null, f);
      this.flowsT.wrap.hidden = false;
      syncRows(
        this.flowsT.body,
        flowHeaders,
        flows.map((x) => ({
          key: `${x.protocol} ${x.client} ${x.vip}`,
          cells: [x.client, x.service, x.protocol, x.vip, x.backend, x.state, x.snat ?? ""],
        })),
      );
      this.flowsT.empty.hidden = flows.length > 0;
      setText(this.flowsT.empty, "The connection table has no flows for this choice.");
      setText(this.count, `${flows.length} flow${flows.length === 1 ? "" : "s"} shown (at most ${limit}), ${new Date().toLocaleTimeString()}.`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      showProblem(this.flowsErr, e.problem, f);
    }
  }
}
