// The dashboard's browser test, driven by TestDashboard (e2e_test.go),
// which runs it inside the lb namespace next to a running `xlb run`:
//
//   XLB_URL          the API listener (http://127.0.0.1:9900)
//   XLB_TOKEN        the API's bearer token
//   HARNESS_URL      the Go test's helper: /info, /traffic, /probe, /stop
//   CHROMIUM         Debian's chromium (never a downloaded browser)
//   XLB_SCREENSHOTS  where the desktop and narrow screenshots go
//   XLB_SCREENSHOT_HISTORY  seconds of chart history before the screenshots (default 0)
//
// It prints "# ..." progress lines and, at the end, one "RESULT {json}"
// line with the page weight and render timings. Any failed check throws,
// saves failure.png and exits 1.

import { chromium } from "playwright-core";
import { mkdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";

const base = process.env.XLB_URL;
const token = process.env.XLB_TOKEN;
const harness = process.env.HARNESS_URL;
const shots = process.env.XLB_SCREENSHOTS;
const origin = new URL(base).origin;

const log = (...a) => console.log("#", ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function waitFor(fn, what, timeout = 15000, every = 200) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ": " + last.message : ""}`);
    await sleep(every);
  }
}

async function hget(path) {
  const r = await fetch(harness + path);
  if (!r.ok) throw new Error(`harness ${path}: ${r.status}`);
  return r.json();
}

async function api(path, opts = {}) {
  const r = await fetch(base + path, { ...opts, headers: { Authorization: `Bearer ${token}`, ...(opts.headers ?? {}) } });
  const ct = r.headers.get("content-type") ?? "";
  return { status: r.status, headers: r.headers, body: ct.includes("json") ? await r.json() : await r.text() };
}

const service = async (name) => (await api("/api/v1/services")).body.services.find((s) => s.name === name);
const backendOf = async (svc, key) => {
  const s = await service(svc);
  return s?.backends.find((b) => (b.port ? `${b.address}:${b.port}` : b.address) === key);
};

const info = await hget("/info");
const [b1, b2, b3] = info.backends;
const vip = info.vip;
log("topology", JSON.stringify(info));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1920, height: 1080 }, acceptDownloads: true, locale: "en-US", colorScheme: "light" });
const page = await context.newPage();

// Every request the page makes, and every console error (a step that
// provokes an API error allows exactly that one).
const foreign = [];
let requests = 0;
page.on("request", (r) => {
  requests++;
  if (new URL(r.url()).origin !== origin) foreign.push(r.url());
});
let allowed = null;
const consoleErrors = [];
const allowedErrors = [];
page.on("console", (m) => {
  if (m.type() !== "error") return;
  if (allowed && allowed.test(m.text())) allowedErrors.push(m.text());
  else consoleErrors.push(m.text());
});
page.on("pageerror", (e) => consoleErrors.push(`uncaught: ${e.message}`));
async function expecting(re, fn) {
  allowed = re;
  try {
    return await fn();
  } finally {
    await sleep(100);
    allowed = null;
  }
}

const svcCard = (name) => page.locator(`article[data-svc="${name}"]`);
const row = (svc, key) => svcCard(svc).locator(`tr[data-key="${key}"]`);
async function confirmDialog(expectTitle) {
  const dlg = page.locator("#confirm-dlg");
  await dlg.waitFor({ state: "visible" });
  const title = await page.locator("#confirm-title").textContent();
  check(title.includes(expectTitle), `confirmation "${title}" names ${expectTitle}`);
  return dlg;
}

const result = {};
try {
  // ---- first load: weight and timing ----
  const firstLoad = [];
  const onFinished = (r) => firstLoad.push(r);
  page.on("requestfinished", onFinished);
  const t0 = Date.now();
  await page.goto(base + "/", { waitUntil: "load" });
  await page.waitForFunction(() => performance.getEntriesByName("xlb-first-data").length > 0, null, { timeout: 10000 });
  result.first_data_wall_ms = Date.now() - t0;
  await sleep(300);
  page.off("requestfinished", onFinished);
  let weight = 0, assets = 0;
  for (const r of firstLoad) {
    const s = await r.sizes();
    const n = s.responseBodySize + s.responseHeadersSize;
    weight += n;
    if (new URL(r.url()).pathname.startsWith("/api/") === false) assets += n;
  }
  const timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const fcp = performance.getEntriesByName("first-contentful-paint")[0];
    const data = performance.getEntriesByName("xlb-first-data")[0];
    return { fcp: fcp?.startTime, data: data?.startTime, dcl: nav?.domContentLoadedEventEnd, load: nav?.loadEventEnd };
  });
  Object.assign(result, {
    page_weight_bytes: weight,
    asset_bytes: assets,
    first_load_requests: firstLoad.length,
    first_contentful_paint_ms: Math.round(timing.fcp ?? -1),
    first_data_ms: Math.round(timing.data ?? -1),
    dom_content_loaded_ms: Math.round(timing.dcl ?? -1),
    load_ms: Math.round(timing.load ?? -1),
  });
  log("first load", JSON.stringify(result));
  check(timing.fcp > 0, "a first contentful paint was recorded");

  // ---- overview: live figures and a packets/s chart that moves ----
  const ppsNow = () => page.locator("#chart-pps").getAttribute("data-last").then(Number);
  await waitFor(async () => (await ppsNow()) > 0, "packets/s above zero");
  const d1 = await page.locator('#chart-pps path.line[data-key="rx_pps"]').getAttribute("d");
  await sleep(2500);
  const d2 = await page.locator('#chart-pps path.line[data-key="rx_pps"]').getAttribute("d");
  check(d1 !== d2, "the packets/s chart moved");
  const tiles = await page.locator(".tiles").innerText();
  check(/pps/.test(tiles) && /bit\/s/.test(tiles) && /%/.test(tiles), `current figures shown: ${tiles.replace(/\s+/g, " ")}`);
  check((await page.locator("#chart-workers path.line").count()) >= 1, "per-worker chart has a series");
  check((await page.locator("#chart-sockets path.line").count()) >= 1, "socket ring drops chart has a series");
  log("overview live: rx", await page.locator("#now-rx_pps").textContent(), "new flows", await page.locator("#now-new_flows").textContent());

  // ---- keyboard: skip link first, nav by Tab + Enter ----
  await page.locator("body").focus();
  await page.keyboard.press("Tab");
  check((await page.evaluate(() => document.activeElement?.className)) === "skip", "the skip link is the first stop");
  let onServices = false;
  for (let i = 0; i < 8 && !onServices; i++) {
    await page.keyboard.press("Tab");
    onServices = await page.evaluate(() => document.activeElement?.getAttribute("data-view") === "services");
  }
  check(onServices, "Tab reaches the Services link");
  await page.keyboard.press("Enter");
  await page.locator("#view-services").waitFor({ state: "visible" });
  check((await page.evaluate(() => document.activeElement?.tagName)) === "H2", "focus moves to the view's heading");
  await waitFor(async () => (await svcCard("web").locator("tbody tr").count()) === 3, "three backends of web");
  for (const b of [b1, b2, b3]) await waitFor(async () => (await row("web", `${b.addr}:80`).locator(".health").textContent()).includes("up"), `${b.name} up`);
  log("services: web with 3 healthy backends");

  // Escape cancels a confirmation: nothing changes.
  await svcCard("web").locator('button[data-action="remove-service"]').focus();
  await page.keyboard.press("Enter");
  await confirmDialog("web");
  check((await page.evaluate(() => document.activeElement?.id)) === "confirm-cancel", "Cancel has the focus in a confirmation");
  await page.keyboard.press("Escape");
  await page.locator("#confirm-dlg").waitFor({ state: "hidden" });
  check(await service("web"), "web is still there after Escape");

  // ---- add a service through the form: the token prompt, then real HTTP ----
  await page.locator("#add-svc-h").click();
  const form = page.locator("form.add-service");
  await form.locator('[name="name"]').fill("api");
  await form.locator('[name="vip"]').fill(vip);
  await form.locator('[name="port"]').fill("8080");
  await form.locator('[name="mode"]').selectOption("dsr");
  await form.locator('[name="health.type"]').selectOption("tcp");
  await form.locator('[name="health.interval"]').fill("500ms");
  await form.locator('[name="backends"]').fill(`${b1.addr}:8080\n${b2.addr}:8080 100`);
  await expecting(/status of 401/, async () => {
    await form.locator('button[type="submit"]').click();
    await page.locator("#token-dlg").waitFor({ state: "visible" });
    const why = await page.locator("#token-why").innerText();
    check(/Unauthorized/.test(why), `the token prompt says why: ${why}`);
    await page.locator("#token-input").fill(token);
    await page.locator("#token-ok").click();
    await svcCard("api").waitFor({ state: "visible", timeout: 10000 });
  });
  const stored = await page.evaluate(() => [sessionStorage.getItem("xlb.api-token"), localStorage.length]);
  check(stored[0] === token && stored[1] === 0, "the token is in sessionStorage only");
  const apiSvc = await service("api");
  check(apiSvc && apiSvc.port === 8080 && apiSvc.backends.length === 2 && apiSvc.health.type === "tcp", `GET /api/v1/services has api: ${JSON.stringify(apiSvc)}`);
  const probe = await hget("/probe?port=8080&n=30");
  check(probe.errors === 0 && probe.total === 30, `30 requests to ${vip}:8080 answered: ${JSON.stringify(probe)}`);
  check(Object.keys(probe.counts).every((k) => k === b1.name || k === b2.name) && probe.counts[b1.name] > 0 && probe.counts[b2.name] > 0, `api spreads over b1 and b2: ${JSON.stringify(probe.counts)}`);
  log("service api added through the form carries HTTP:", JSON.stringify(probe.counts));

  // ---- an API error is shown as the API wrote it ----
  const apiCard = svcCard("api");
  await apiCard.locator("details.add summary").click();
  const bform = apiCard.locator("form.add-backend");
  await bform.locator('[name="address"]').fill("10.30.0.300");
  await bform.locator('[name="port"]').fill("8080");
  await expecting(/status of 400/, async () => {
    await bform.locator('button[type="submit"]').click();
    await bform.locator(".err .problem").waitFor({ state: "visible" });
  });
  const want = (await api("/api/v1/services/api/backends", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ address: "10.30.0.300", port: 8080 }) })).body;
  const shown = await bform.locator(".err").innerText();
  check(want.status === 400 && want.field, `the API names the field: ${JSON.stringify(want)}`);
  check(shown.includes(want.title) && shown.includes(want.detail) && shown.includes(want.field), `the page shows title, detail and field as written: "${shown}" vs ${JSON.stringify(want)}`);
  check((await bform.locator('[name="address"]').getAttribute("aria-invalid")) === "true", "the address input is marked invalid");
  log("API error shown:", shown.replace(/\s+/g, " "));

  // ---- add and remove a backend (with a cancelled and a confirmed confirmation) ----
  await bform.locator('[name="address"]').fill(b3.addr);
  await bform.locator('button[type="submit"]').click();
  const b3api = `${b3.addr}:8080`;
  await row("api", b3api).waitFor({ state: "visible" });
  check(await backendOf("api", b3api), "backend added through the form is in the API");
  check((await bform.locator(".err").isHidden()), "the error is cleared after a success");
  await row("api", b3api).locator('button[data-action="remove-backend"]').click();
  await confirmDialog(b3api);
  await page.locator("#confirm-cancel").click();
  await sleep(300);
  check(await backendOf("api", b3api), "Cancel keeps the backend");
  await row("api", b3api).locator('button[data-action="remove-backend"]').click();
  await confirmDialog(b3api);
  await page.locator("#confirm-ok").click();
  await row("api", b3api).waitFor({ state: "detached" });
  check(!(await backendOf("api", b3api)), "the removed backend is gone from the API");
  log("backend added and removed");

  // ---- disable and enable ----
  const b2api = `${b2.addr}:8080`;
  await row("api", b2api).locator('button[data-action="disable"]').click();
  await confirmDialog(b2api);
  await page.locator("#confirm-ok").click();
  await waitFor(async () => (await backendOf("api", b2api))?.state === "disabled", "api b2 disabled in the API");
  await waitFor(async () => (await row("api", b2api).locator(".state").textContent()) === "disabled", "the page shows disabled");
  await row("api", b2api).locator('button[data-action="enable"]').click();
  await waitFor(async () => ((await backendOf("api", b2api))?.state ?? "active") === "active", "api b2 active again");
  log("disable / enable");

  // ---- drain: the API changes and new connections stop reaching it ----
  const k1 = `${b1.addr}:80`;
  const before = await hget("/traffic");
  check(before.counts[b1.name] > 0, `b1 had traffic before the drain: ${JSON.stringify(before)}`);
  await row("web", k1).locator('button[data-action="drain"]').click();
  await confirmDialog(k1);
  await page.locator("#confirm-ok").click();
  await waitFor(async () => (await backendOf("web", k1))?.state === "draining", "web b1 draining in the API");
  await waitFor(async () => (await row("web", k1).locator(".state").textContent()) === "draining", "the page shows draining");
  await sleep(1000);
  const t1 = await hget("/traffic");
  await sleep(3000);
  const t2 = await hget("/traffic");
  const delta = (n) => (t2.counts[n] ?? 0) - (t1.counts[n] ?? 0);
  const reused = (n) => (t2.reused[n] ?? 0) - (t1.reused[n] ?? 0);
  // A connection whose source port the kernel reused while xlb still held
  // the old flow (closing) on b1 goes to b1: that is conntrack, not
  // scheduling; every other new connection must avoid the drained backend.
  if (delta(b1.name) - reused(b1.name) !== 0) {
    // Say which connections they were and what xlb's table holds for them.
    for (const a of (await hget(`/recent?since_ms=${t1.now_ms}`)).filter((x) => x.backend === b1.name)) {
      const lk = (await api(`/api/v1/lookup?protocol=tcp&src=${a.remote}&dst=${vip}:80`)).body;
      log("drained b1 answered", JSON.stringify(a), "lookup now:", JSON.stringify(lk));
    }
    log("stats:", JSON.stringify((await api("/api/v1/stats")).body.totals));
  }
  check(delta(b1.name) - reused(b1.name) === 0, `no new flow reached drained b1: ${JSON.stringify({ t1, t2 })}`);
  check(delta(b2.name) + delta(b3.name) >= 20, `the others took the traffic: ${JSON.stringify({ t1, t2 })}`);
  log(`drain: in 3 s b1 got ${delta(b1.name)} connections (${reused(b1.name)} on a reused 4-tuple of a closing flow), b2 ${delta(b2.name)}, b3 ${delta(b3.name)}`);
  await row("web", k1).locator('button[data-action="enable"]').click();
  await waitFor(async () => ((await backendOf("web", k1))?.state ?? "active") === "active", "web b1 active again");

  // ---- weight ----
  const k2 = `${b2.addr}:80`;
  await row("web", k2).locator('input[name="weight"]').fill("50");
  await row("web", k2).locator('input[name="weight"]').press("Enter");
  await waitFor(async () => (await backendOf("web", k2))?.weight === 50, "web b2 weight 50 in the API");
  log("weight set to 50");

  // ---- health: stop b3's server, the page says down ----
  const k3 = `${b3.addr}:80`;
  await fetch(harness + `/stop?backend=${b3.name}`, { method: "POST" });
  const tDown = Date.now();
  await waitFor(async () => (await row("web", k3).locator(".health").textContent()).includes("down"), "b3 shown down", 15000);
  const downText = await row("web", k3).innerText();
  check((await row("web", k3).locator(".health").getAttribute("class")).includes("health-down"), "down has its colour class");
  check((await backendOf("web", k3)).health.state === "down", "the API says b3 is down");
  log(`b3 down on the page ${Date.now() - tDown} ms after its server stopped:`, downText.replace(/\s+/g, " "));

  // ---- flow lookup and the connection table ----
  await page.locator('nav a[data-view="flows"]').click();
  await page.locator("#view-flows").waitFor({ state: "visible" });
  const lf = page.locator("form.lookup");
  await lf.locator('[name="src"]').fill(`${info.client}:40000`);
  await lf.locator('[name="dst"]').fill(`${vip}:80`);
  await lf.locator('button[type="submit"]').click();
  await page.locator(".decision").waitFor({ state: "visible" });
  const decision = await page.locator(".decision").innerText();
  const want2 = (await api(`/api/v1/lookup?protocol=tcp&src=${info.client}:40000&dst=${vip}:80`)).body;
  check(want2.backend && decision.includes(want2.backend) && decision.includes(want2.why) && want2.backend !== k3, `lookup shows the pipeline's pick ${JSON.stringify(want2)}: ${decision}`);
  log("lookup:", decision.replace(/\s+/g, " "));
  const sf = page.locator("form.sample");
  await sf.locator('[name="service"]').selectOption("web");
  await sf.locator('[name="limit"]').fill("20");
  await sf.locator('button[type="submit"]').click();
  await waitFor(async () => /at most 20\b/.test(await page.locator("#view-flows .note[aria-live]").textContent()), "the sample of 20");
  check((await page.locator("table.flows tbody tr").count()) > 0, "flows in the sample");
  const svcCells = await page.locator('table.flows tbody tr td[data-label="Service"]').allTextContents();
  check(svcCells.length <= 20 && svcCells.every((s) => s === "web"), `sample of web only, at most 20: ${svcCells.length}`);
  log("connection table sample:", svcCells.length, "flows of web");

  // ---- configuration: YAML and its download ----
  await page.locator('nav a[data-view="config"]').click();
  await waitFor(async () => (await page.locator("pre.yaml").textContent()).includes("name: api"), "YAML with service api");
  const [dl] = await Promise.all([page.waitForEvent("download"), page.locator('a[download="xlb.yaml"]').click()]);
  const yaml = await readFile(await dl.path(), "utf8");
  check(dl.suggestedFilename() === "xlb.yaml" && yaml.includes("services:") && yaml.includes("name: web"), `downloaded ${dl.suggestedFilename()}`);
  const plain = await api("/api/v1/config?format=yaml&download=1");
  check(/attachment/.test(plain.headers.get("content-disposition") ?? ""), "the plain link's URL answers as an attachment");
  log("configuration shown and downloaded:", yaml.length, "bytes");

  // ---- accessibility: axe-core (WCAG 2.1 A/AA rules) on every view, light and dark ----
  const axeSource = await readFile(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
  const axeFindings = [];
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const v of ["overview", "services", "flows", "config"]) {
      await page.locator(`nav a[data-view="${v}"]`).click();
      await sleep(300);
      if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(axeSource);
      const found = await page.evaluate(async () => {
        const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
        return r.violations.map((x) => ({ id: x.id, impact: x.impact, help: x.help, nodes: x.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
      });
      for (const f of found) axeFindings.push({ view: v, scheme, ...f });
    }
  }
  await page.emulateMedia({ colorScheme: "light" });
  for (const f of axeFindings) log("axe:", JSON.stringify(f));
  const serious = axeFindings.filter((f) => f.impact === "serious" || f.impact === "critical");
  check(serious.length === 0, `no serious accessibility violations: ${JSON.stringify(serious)}`);
  log("axe: no serious or critical violations on the four views, light and dark;", axeFindings.length, "lesser findings");

  // ---- remove the service ----
  await page.locator('nav a[data-view="services"]').click();
  await svcCard("api").locator('button[data-action="remove-service"]').click();
  await confirmDialog("api");
  await page.locator("#confirm-ok").click();
  await svcCard("api").waitFor({ state: "detached" });
  check(!(await service("api")), "api is gone from the API");
  log("service api removed");

  // ---- screenshots and layout: 1920 and 375 px ----
  // XLB_SCREENSHOT_HISTORY=90 waits until the charts hold 90 s (for docs).
  const history = Number(process.env.XLB_SCREENSHOT_HISTORY || 0) * 1000 - (Date.now() - t0);
  if (history > 0) {
    log(`waiting ${Math.round(history / 1000)} s for chart history`);
    await sleep(history);
  }
  await mkdir(shots, { recursive: true });
  await page.locator('nav a[data-view="overview"]').click();
  await sleep(1500);
  await page.screenshot({ path: join(shots, "desktop-overview.png"), fullPage: true });
  await page.locator('nav a[data-view="services"]').click();
  await sleep(1200);
  await page.screenshot({ path: join(shots, "desktop-services.png"), fullPage: true });
  await page.setViewportSize({ width: 375, height: 812 });
  for (const v of ["overview", "services", "flows", "config"]) {
    await page.locator(`nav a[data-view="${v}"]`).click();
    await sleep(400);
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    check(w <= 375, `${v} fits 375 px without sideways scrolling (scrollWidth ${w})`);
  }
  await page.locator('nav a[data-view="overview"]').click();
  await sleep(1200);
  await page.screenshot({ path: join(shots, "narrow-overview.png"), fullPage: true });
  await page.locator('nav a[data-view="services"]').click();
  await sleep(1200);
  await page.screenshot({ path: join(shots, "narrow-services.png"), fullPage: true });
  log("screenshots in", shots);

  // ---- the whole run ----
  check(foreign.length === 0, `no request left the origin: ${foreign.join(", ")}`);
  check(consoleErrors.length === 0, `no console errors: ${consoleErrors.join(" | ")}`);
  Object.assign(result, { requests, expected_console_errors: allowedErrors.length });
  console.log("RESULT " + JSON.stringify(result));
} catch (e) {
  console.log("# FAILED:", e.message);
  if (consoleErrors.length) console.log("# console errors:", consoleErrors.join(" | "));
  try {
    await mkdir(shots, { recursive: true });
    await page.screenshot({ path: join(shots, "failure.png"), fullPage: true });
    console.log("# page at the failure:", join(shots, "failure.png"));
  } catch {
    /* the browser may be gone */
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
