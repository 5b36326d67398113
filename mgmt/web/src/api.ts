// The REST API as the dashboard uses it: the same endpoints and the same
// bearer token as xlbctl. Errors are RFC 9457 problems, kept as the API
// wrote them so the page can show them unchanged.

export interface Totals {
  rx_packets: number;
  rx_bytes: number;
  tx_packets: number;
  tx_bytes: number;
  passed: number;
  dropped: number;
  new_flows: number;
  stateless: number;
  rescheduled: number;
  echo_replies: number;
  icmp_forwarded: number;
  replies: number;
  too_big_sent: number;
}

export interface ObjStats {
  packets: number;
  bytes: number;
  new_flows: number;
  flows: number;
}

export interface SocketStats {
  mode: string;
  rx_dropped: number;
  rx_invalid_descs: number;
  tx_invalid_descs: number;
  rx_ring_full: number;
  rx_fill_ring_empty_descs: number;
  tx_ring_empty_descs: number;
  rx_packets: number;
  tx_packets: number;
}

export interface Stats {
  uptime_seconds: number;
  generation: number;
  workers: number;
  totals: Totals;
  drops: Record<string, number> | null;
  passes: Record<string, number> | null;
  services: Record<string, ObjStats & { backends: Record<string, ObjStats> | null }> | null;
  per_worker: Totals[] | null;
  sockets: Record<string, SocketStats> | null;
  conntrack: { entries: number; capacity: number };
  runners?: { rx_batches: number; tx_dropped: number; pass_dropped: number; fill_starved: number; completed_txs: number };
}

export interface HealthCheck {
  type?: string;
  port?: number;
  path?: string;
  host?: string;
  expect?: number;
  interval?: string;
  timeout?: string;
  rise?: number;
  fall?: number;
}

export interface HealthView {
  state: string; // up | down | unknown
  since?: string;
  last_check?: string;
  last_result?: string;
  last_error?: string;
  latency_ms?: number;
  held_until?: string;
  checked: boolean;
}

export interface Backend {
  address: string;
  port?: number;
  weight?: number;
  state?: string; // active | draining | disabled
  mac?: string;
  interface?: string;
}

export interface BackendView extends Backend {
  health?: HealthView;
  flows: number;
  counters: ObjStats;
}

export interface Service {
  name: string;
  vip: string;
  port: number;
  protocol?: string;
  mode?: string;
  scheduler?: string;
  dscp?: number;
  all_down?: string;
  health?: HealthCheck;
  backends: Backend[];
}

export interface ServiceView extends Service {
  backends: BackendView[];
  counters: ObjStats;
  all_backends_down?: boolean;
}

export interface Flow {
  service: string;
  protocol: string;
  client: string;
  vip: string;
  backend: string;
  state: string;
  snat?: string;
}

export interface LookupResult {
  service?: string;
  mode?: string;
  backend?: string;
  action: string;
  reason?: string;
  existing: boolean;
  why: string;
}

export interface BackendPatch {
  weight?: number;
  state?: string;
}

/** Problem is an RFC 9457 problem details object as xlb writes it. */
export interface Problem {
  type?: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  field?: string;
  value?: string;
  restart_keys?: string[];
}

export class ApiError extends Error {
  readonly problem: Problem;
  constructor(p: Problem) {
    super(`${p.status} ${p.title}${p.detail ? ": " + p.detail : ""}`);
    this.problem = p;
  }
}

// ---- the token: per browser tab (sessionStorage), never in localStorage ----

const tokenKey = "xlb.api-token";

export function getToken(): string {
  try {
    return sessionStorage.getItem(tokenKey) ?? "";
  } catch {
    return "";
  }
}

export function setToken(t: string): void {
  try {
    if (t) sessionStorage.setItem(tokenKey, t);
    else sessionStorage.removeItem(tokenKey);
  } catch {
    /* storage disabled: the token lasts until the next request fails */
  }
}

/**
 * promptToken asks for a token after a 401 of a method-request and
 * resolves to it, or to null when the operator cancels. main.ts installs
 * the dialog.
 */
type TokenPrompt = (p: Problem, method: string) => Promise<string | null>;
let promptToken: TokenPrompt | null = null;

export function setTokenPrompt(fn: TokenPrompt): void {
  promptToken = fn;
}

async function readProblem(res: Response): Promise<Problem> {
  const ct = res.headers.get("Content-Type") ?? "";
  const text = await res.text();
  if (ct.includes("json")) {
    try {
      const p = JSON.parse(text) as Problem;
      if (p && typeof p === "object" && p.title) return { ...p, status: p.status || res.status };
    } catch {
      /* fall through: not the JSON it claims */
    }
  }
  return { title: res.statusText || `HTTP ${res.status}`, status: res.status, detail: text.trim() || undefined };
}

/**
 * call sends one request. A 401 opens the token prompt and, once a token
 * is given, sends the request again with it.
 */
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  for (;;) {
    const headers: Record<string, string> = { Accept: "application/json" };
    const tok = getToken();
    if (tok) headers["Authorization"] = "Bearer " + tok;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res: Response;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch (e) {
      throw new ApiError({ title: "API unreachable", status: 0, detail: String(e instanceof Error ? e.message : e) });
    }
    if (res.status === 401 && promptToken) {
      const p = await readProblem(res);
      const t = await promptToken(p, method);
      if (t) {
        setToken(t);
        continue;
      }
      throw new ApiError(p);
    }
    if (!res.ok) throw new ApiError(await readProblem(res));
    if (res.status === 204) return undefined as T;
    const ct = res.headers.get("Content-Type") ?? "";
    return (ct.includes("json") ? await res.json() : await res.text()) as T;
  }
}

export const get = <T>(path: string) => call<T>("GET", path);

export const api = {
  stats: () => get<Stats>("/api/v1/stats"),
  services: () => get<{ services: ServiceView[] }>("/api/v1/services").then((r) => r.services ?? []),
  addService: (s: unknown) => call<ServiceView>("POST", "/api/v1/services", s),
  deleteService: (name: string) => call<void>("DELETE", `/api/v1/services/${encodeURIComponent(name)}`),
  addBackend: (svc: string, b: unknown) =>
    call<BackendView>("POST", `/api/v1/services/${encodeURIComponent(svc)}/backends`, b),
  patchBackend: (svc: string, key: string, p: BackendPatch) =>
    call<BackendView>("PATCH", `/api/v1/services/${encodeURIComponent(svc)}/backends/${encodeURIComponent(key)}`, p),
  deleteBackend: (svc: string, key: string) =>
    call<void>("DELETE", `/api/v1/services/${encodeURIComponent(svc)}/backends/${encodeURIComponent(key)}`),
  flows: (svc: string, limit: number) => {
    const q = new URLSearchParams({ limit: String(limit) });
    if (svc) q.set("service", svc);
    return get<{ flows: Flow[] }>(`/api/v1/flows?${q}`).then((r) => r.flows ?? []);
  },
  lookup: (protocol: string, src: string, dst: string) =>
    get<LookupResult>(`/api/v1/lookup?${new URLSearchParams({ protocol, src, dst })}`),
  configYAML: () => get<string>("/api/v1/config?format=yaml"),
};

/** backendKey is how the API names a backend: address, or address:port. */
export function backendKey(b: Backend): string {
  if (!b.port) return b.address;
  return b.address.includes(":") ? `[${b.address}]:${b.port}` : `${b.address}:${b.port}`;
}
