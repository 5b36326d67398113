// xlb dashboard: four views over the REST API (the same one xlbctl uses),
// switched by the URL fragment so links, Back and the keyboard work.

import { api, ApiError, getToken, setToken, setTokenPrompt, type Problem } from "./api";
import { ConfigView } from "./config";
import { $, h, problemNode, setText } from "./dom";
import { Flows } from "./flows";
import { Overview } from "./overview";
import { Services } from "./services";

const views = ["overview", "services", "flows", "config"] as const;
type View = (typeof views)[number];
const titles: Record<View, string> = { overview: "Overview", services: "Services", flows: "Flows", config: "Configuration" };

// ---- dialogs ----

let tokenAsk: Promise<string | null> | null = null;
// declined: the operator cancelled the prompt, so the once-a-second reads
// (with api.auth_reads) stop asking; a change, or the token button, asks again.
let declined = false;

/** askToken opens the token dialog (once, however many requests wait on it). */
function askToken(p?: Problem, method = ""): Promise<string | null> {
  if (tokenAsk) return tokenAsk;
  if (declined && method === "GET") return Promise.resolve(null);
  const dlg = $("#token-dlg") as HTMLDialogElement;
  const form = $("#token-form") as HTMLFormElement;
  const inp = $("#token-input") as HTMLInputElement;
  const why = $("#token-why");
  why.replaceChildren(p ? problemNode(p) : h("p", null, "Changes (and, with api.auth_reads, reads) need the API's bearer token."));
  inp.value = "";
  tokenAsk = new Promise((resolve) => {
    const done = (v: string | null) => {
      form.removeEventListener("submit", onSubmit);
      form.removeEventListener("click", onClick);
      dlg.removeEventListener("cancel", onCancel);
      if (dlg.open) dlg.close();
      tokenAsk = null;
      resolve(v);
    };
    const onSubmit = (e: Event) => {
      e.preventDefault();
      done(inp.value.trim() || null);
    };
    const onClick = (e: Event) => {
      const b = (e.target as Element).closest("button");
      if (b?.value === "cancel") done(null);
      if (b?.value === "forget") {
        setToken("");
        tokenLabel();
        announce("API token forgotten");
        done(null);
      }
    };
    const onCancel = (e: Event) => {
      e.preventDefault();
      done(null);
    };
    form.addEventListener("submit", onSubmit);
    form.addEventListener("click", onClick);
    dlg.addEventListener("cancel", onCancel);
    dlg.showModal();
    inp.focus();
  });
  return tokenAsk.then((t) => {
    declined = !t;
    tokenLabel();
    return t;
  });
}

function tokenLabel(): void {
  setText($("#token-btn"), getToken() ? "API token ✔" : "API token");
}

/** confirmAction asks before a destructive change; Cancel is the default. */
function confirmAction(title: string, body: string, action: string): Promise<boolean> {
  const dlg = $("#confirm-dlg") as HTMLDialogElement;
  const form = $("#confirm-form") as HTMLFormElement;
  setText($("#confirm-title"), title);
  setText($("#confirm-body"), body);
  setText($("#confirm-ok"), action);
  return new Promise((resolve) => {
    const done = (v: boolean) => {
      form.removeEventListener("submit", onSubmit);
      form.removeEventListener("click", onClick);
      dlg.removeEventListener("cancel", onCancel);
      if (dlg.open) dlg.close();
      resolve(v);
    };
    const onSubmit = (e: Event) => {
      e.preventDefault();
      done(true);
    };
    const onClick = (e: Event) => {
      if ((e.target as Element).closest("button")?.value === "cancel") done(false);
    };
    const onCancel = (e: Event) => {
      e.preventDefault();
      done(false);
    };
    form.addEventListener("submit", onSubmit);
    form.addEventListener("click", onClick);
    dlg.addEventListener("cancel", onCancel);
    dlg.showModal();
    $("#confirm-cancel").focus();
  });
}

let toastTimer = 0;
function announce(msg: string): void {
  const t = $("#toast");
  setText(t, msg);
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => (t.hidden = true), 5000);
}

// ---- status line ----

function status(ok: boolean, text: string): void {
  const el = $("#status");
  el.className = ok ? "status ok" : "status bad";
  setText(el, text);
}

// ---- start ----

function start(): void {
  setTokenPrompt(askToken);
  tokenLabel();
  $("#token-btn").addEventListener("click", () => {
    void askToken().then((t) => {
      if (t) {
        setToken(t);
        tokenLabel();
        announce("API token kept for this tab");
      }
    });
  });

  const ui = { confirm: confirmAction, announce };
  const overview = new Overview($("#view-overview"));
  const services = new Services($("#view-services"), ui);
  const flows = new Flows($("#view-flows"));
  const config = new ConfigView($("#view-config"));
  services.onNames = (s) => flows.setServices(s);

  const report = (e: unknown) => {
    if (e instanceof ApiError) status(false, e.problem.status ? `API: ${e.problem.title} (${e.problem.status})${e.problem.detail ? " " + e.problem.detail : ""}` : `API unreachable: ${e.problem.detail ?? ""}`);
    else throw e;
  };

  let current: View | null = null;
  const show = (v: View, focus: boolean) => {
    current = v;
    for (const x of views) $(`#view-${x}`).hidden = x !== v;
    for (const a of document.querySelectorAll<HTMLAnchorElement>("nav a[data-view]")) {
      if (a.dataset.view === v) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.title = `${titles[v]} · xlb`;
    if (focus) $(`#view-${v} h2`).focus();
    if (v === "services") void services.refresh().catch(report);
    if (v === "flows") flows.shown();
    if (v === "config") void config.load();
  };
  const route = (focus: boolean) => {
    const v = location.hash.slice(1) as View;
    if (views.includes(v)) show(v, focus);
    else if (!current) show("overview", false);
  };
  window.addEventListener("hashchange", () => route(true));
  route(false);

  // Stats once a second (the charts' resolution), whatever the view.
  const statsLoop = async () => {
    const t0 = performance.now();
    try {
      overview.update(await api.stats());
      status(true, `live · ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      report(e);
    } finally {
      setTimeout(() => void statsLoop(), Math.max(100, 1000 - (performance.now() - t0)));
    }
  };
  void statsLoop();

  // Services once a second while shown, else every 5 s (for the flow view's choices).
  let last = 0;
  const svcLoop = async () => {
    const period = current === "services" ? 1000 : 5000;
    try {
      if (performance.now() - last >= period - 50) {
        last = performance.now();
        await services.refresh().catch(report);
      }
    } finally {
      setTimeout(() => void svcLoop(), 250);
    }
  };
  void svcLoop();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
