// The live configuration as YAML (GET /api/v1/config?format=yaml), and a
// download of it (…&download=1).

import { api, ApiError, getToken } from "./api";
import { h, setText, showProblem } from "./dom";

const downloadURL = "/api/v1/config?format=yaml&download=1";

export class ConfigView {
  private code = h("code");
  private when = h("p", { class: "note", "aria-live": "polite" });
  private err = h("div", { class: "err", role: "alert", id: "err-config", hidden: true });

  constructor(root: HTMLElement) {
    const refresh = h("button", { type: "button" }, "Reload");
    refresh.addEventListener("click", () => void this.load());
    const dl = h("a", { class: "button", href: downloadURL, download: "xlb.yaml" }, "Download YAML");
    dl.addEventListener("click", (e) => {
      // A plain link carries no token; with one (api.auth_reads) fetch it.
      if (getToken()) {
        e.preventDefault();
        void this.download();
      }
    });
    root.append(
      h("h2", { tabindex: "-1" }, "Configuration"),
      h("p", { class: "note" }, "The accepted configuration, as the API serves it; change it with the API, xlbctl or the Services view."),
      h("div", { class: "toolbar" }, refresh, dl),
      this.err,
      this.when,
      h("pre", { class: "yaml", tabindex: "0", "aria-label": "Configuration in YAML" }, this.code),
    );
  }

  async load(): Promise<void> {
    try {
      const y = await api.configYAML();
      showProblem(this.err, null);
      setText(this.code, y);
      setText(this.when, `Loaded ${new Date().toLocaleTimeString()}.`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      showProblem(this.err, e.problem);
    }
  }

  private async download(): Promise<void> {
    try {
      const y = await api.configYAML();
      const url = URL.createObjectURL(new Blob([y], { type: "application/yaml" }));
      const a = h("a", { href: url, download: "xlb.yaml", hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      showProblem(this.err, e.problem);
    }
  }
}
