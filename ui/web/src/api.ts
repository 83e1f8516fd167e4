// Types and fetchers for the katib-ui JSON API (ui/src/api.rs).

export interface Summary {
  status: string;
  trials: number;
  succeeded: number;
  running: number;
  pending: number;
  failed: number;
  killed: number;
  earlyStopped: number;
  metricsUnavailable: number;
  maxTrialCount: number | null;
  parallelTrialCount: number | null;
  algorithm: string | null;
  objectiveMetric: string | null;
  objectiveType: string | null;
  goal: number | null;
  bestTrial: string | null;
  bestValue: number | null;
  bestParams: Record<string, string> | null;
  startTime: string | null;
  completionTime: string | null;
}

export interface ExperimentItem {
  namespace: string;
  name: string;
  status: string;
  created: string;
  updated: string;
  summary: Summary;
}

export interface TrialRow {
  name: string;
  seq: number;
  status: string;
  params: Record<string, string>;
  metrics: Record<string, string>;
  objective: number | null;
  start: string | null;
  end: string | null;
  message: string;
}

export interface ParamSpec {
  name: string;
  parameterType: string;
  feasibleSpace: { min?: string; max?: string; list?: string[]; step?: string; distribution?: string };
}

export interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface Importance {
  name: string;
  eta2: number;
  share: number;
}

export interface Detail {
  experiment: {
    metadata: { name: string; namespace?: string };
    spec: {
      parameters?: ParamSpec[];
      objective?: { type: string; goal?: number; objectiveMetricName: string; additionalMetricNames?: string[] };
      algorithm?: { algorithmName: string; algorithmSettings?: { name: string; value: string }[] };
      earlyStopping?: { algorithmName: string; algorithmSettings?: { name: string; value: string }[] };
      parallelTrialCount?: number;
      maxTrialCount?: number;
      maxFailedTrialCount?: number;
      resumePolicy?: string;
    };
    status?: { conditions?: Condition[]; startTime?: string; completionTime?: string | null };
  };
  status: string;
  created: string;
  updated: string;
  summary: Summary;
  trials: TrialRow[];
  bestSoFar: (number | null)[];
  importance: Importance[];
}

export interface Curve {
  trial: string;
  status: string;
  points: [number, number][];
}

export interface Problem {
  line: number | null;
  column: number | null;
  field: string | null;
  message: string;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public problems: Problem[] = [],
  ) {
    super(message);
  }
}

async function call<T>(path: string, init?: RequestInit): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the katib server (${(e as Error).message}); is it still running?`);
  }
  if (!res.ok) {
    let body: { error?: string; problems?: Problem[] } = {};
    try {
      body = await res.json();
    } catch {
      /* not JSON */
    }
    throw new ApiError(res.status, body.error ?? `${res.status} ${res.statusText}`, body.problems ?? []);
  }
  if (res.status === 204) return undefined as T;
  const type = res.headers.get("content-type") ?? "";
  return (type.includes("json") ? res.json() : res.text()) as Promise<T>;
}

const enc = encodeURIComponent;
const exp = (ns: string, name: string) => `/api/experiments/${enc(ns)}/${enc(name)}`;

export const api = {
  list: (namespace?: string) =>
    call<{ experiments: ExperimentItem[] }>(`/api/experiments${namespace ? `?namespace=${enc(namespace)}` : ""}`),
  detail: (ns: string, name: string) => call<Detail>(exp(ns, name)),
  intermediate: (ns: string, name: string) =>
    call<{ metric: string; curves: Curve[]; truncated: boolean }>(`${exp(ns, name)}/intermediate`),
  trial: (ns: string, name: string, trial: string) =>
    call<{ trial: any; metrics: Record<string, { time: string; value: string }[]> }>(
      `${exp(ns, name)}/trials/${enc(trial)}`,
    ),
  log: (ns: string, name: string, trial: string) => call<string>(`${exp(ns, name)}/trials/${enc(trial)}/log`),
  info: () => call<{ canLaunch: boolean; workDir: string | null }>("/api/info"),
  remove: (ns: string, name: string) => call<void>(exp(ns, name), { method: "DELETE" }),
  validate: (yaml: string) =>
    call<{ valid: boolean; namespace: string; name: string }>("/api/validate", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ yaml }),
    }),
  create: (yaml: string) =>
    call<{ namespace: string; name: string }>("/api/experiments", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ yaml }),
    }),
};

export type Change =
  | { type: "experiment"; namespace: string; name: string; status: string; summary: Summary; created: string }
  | { type: "trials"; namespace: string; experiment: string; rows: TrialRow[] }
  | { type: "deleted"; namespace: string; name: string }
  | { type: "touched"; namespace: string; name: string }
  | { type: "lagged"; missed: number };

type Listener = (c: Change) => void;
const listeners = new Set<Listener>();
let source: EventSource | null = null;

/** Subscribes to server-sent changes; returns the unsubscribe function. */
export function onChange(fn: Listener): () => void {
  listeners.add(fn);
  if (!source) {
    source = new EventSource("/api/events");
    const dot = document.getElementById("live");
    source.onopen = () => dot?.classList.add("on");
    source.onerror = () => dot?.classList.remove("on");
    source.onmessage = (ev) => {
      let c: Change;
      try {
        c = JSON.parse(ev.data);
      } catch {
        return;
      }
      for (const l of listeners) l(c);
    };
  }
  return () => listeners.delete(fn);
}
