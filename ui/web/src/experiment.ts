// The experiment page: overview, trials table, and plots (all drawn from one API call;
// intermediate values are fetched when their tab opens).
import { ApiError, api, onChange, type Detail, type ParamSpec, type TrialRow } from "./api";
import { h, clear, statusBadge, errorBox, setTitle, relTime, duration } from "./dom";
import { STATUS_COLORS, axes, canvas, drawPoints, extent, fmt, hover, polyline, ramp, scale, type Pt } from "./plots";

const TABS = ["overview", "trials", "history", "parallel", "intermediate", "slice", "contour", "importance", "compare"] as const;
type Tab = (typeof TABS)[number];
/** A brush drag is in progress: live updates wait so the canvas is not replaced under it. */
let dragging = false;
const TAB_LABEL: Record<Tab, string> = {
  overview: "Overview",
  trials: "Trials",
  history: "History",
  parallel: "Parallel coordinates",
  intermediate: "Intermediate values",
  slice: "Slice",
  contour: "Contour",
  importance: "Importance",
  compare: "Compare",
};

interface State {
  ns: string;
  name: string;
  d: Detail | null;
  byName: Map<string, number>;
  tab: Tab;
  selected: Set<string>;
  sort: { key: string; dir: 1 | -1 };
  filter: string;
  statusFilter: string;
  brushes: Map<string, [number, number]>;
  hiddenAxes: Set<string>;
  scroll: number;
}

export function experimentPage(root: HTMLElement, ns: string, name: string, q: URLSearchParams): () => void {
  setTitle(name);
  const st: State = {
    ns,
    name,
    d: null,
    byName: new Map(),
    tab: (TABS as readonly string[]).includes(q.get("tab") ?? "") ? (q.get("tab") as Tab) : "overview",
    selected: new Set((q.get("trials") ?? "").split(",").filter(Boolean)),
    sort: { key: "seq", dir: 1 },
    filter: "",
    statusFilter: "",
    brushes: new Map(),
    hiddenAxes: new Set(),
    scroll: 0,
  };
  const head = h("div", { class: "page-head" });
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Experiment views" });
  const panel = h("section", { class: "panel", role: "tabpanel", id: "panel" });
  root.append(head, tabs, panel);
  let disposed = false;

  for (const t of TABS) {
    const b = h("button", { role: "tab", id: `tab-${t}`, "aria-controls": "panel", "data-tab": t }, TAB_LABEL[t]);
    b.addEventListener("click", () => select(t));
    b.addEventListener("keydown", (e) => {
      const i = TABS.indexOf(t);
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        const n = TABS[(i + (e.key === "ArrowRight" ? 1 : TABS.length - 1)) % TABS.length];
        select(n);
        (tabs.querySelector(`[data-tab="${n}"]`) as HTMLElement).focus();
      }
    });
    tabs.append(b);
  }

  function select(t: Tab): void {
    st.tab = t;
    const sel = st.selected.size ? `&trials=${[...st.selected].map(encodeURIComponent).join(",")}` : "";
    history.replaceState(null, "", `#/e/${encodeURIComponent(ns)}/${encodeURIComponent(name)}?tab=${t}${sel}`);
    renderPanel();
  }

  function renderHead(): void {
    clear(head);
    const d = st.d;
    const s = d?.summary;
    head.append(
      h("div", {}, h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Experiments"), ` / ${ns} /`), h("h1", {}, name, " ", d ? statusBadge(d.status) : "")),
    );
    if (s) {
      const done = s.succeeded + s.failed + s.killed + s.earlyStopped + s.metricsUnavailable;
      head.append(
        h(
          "dl",
          { class: "stats", id: "stats" },
          h("div", {}, h("dt", {}, "Trials"), h("dd", { id: "trial-count" }, `${d!.trials.length}`)),
          h("div", {}, h("dt", {}, "Done"), h("dd", {}, `${done}/${s.maxTrialCount ?? "?"}`)),
          h("div", {}, h("dt", {}, "Running"), h("dd", {}, `${s.running}`)),
          h("div", {}, h("dt", {}, `Best ${s.objectiveMetric ?? ""}`), h("dd", { id: "best-value" }, fmt(s.bestValue))),
        ),
      );
    }
  }

  let renderTimer = 0;
  let refreshTable: (() => void) | null = null;
  function scheduleRender(): void {
    if (renderTimer) return;
    renderTimer = window.setTimeout(() => {
      renderTimer = 0;
      if (disposed) return;
      renderHead();
      // Live updates redraw the open view, except the table keeps its scroll position.
      if (dragging) {
        scheduleRender();
        return;
      }
      // The table updates its rows in place (keeping focus, filter and scroll).
      if (st.tab === "trials" && refreshTable) refreshTable();
      else if (st.tab !== "intermediate" && st.tab !== "compare") renderPanel();
    }, 400);
  }

  function renderPanel(): void {
    for (const b of tabs.querySelectorAll("button")) {
      const on = b.getAttribute("data-tab") === st.tab;
      b.setAttribute("aria-selected", String(on));
      b.setAttribute("tabindex", on ? "0" : "-1");
    }
    const keepScroll = panel.querySelector(".vtable")?.scrollTop;
    if (keepScroll !== undefined) st.scroll = keepScroll;
    clear(panel);
    refreshTable = null;
    const d = st.d;
    if (!d) return;
    panel.setAttribute("aria-labelledby", `tab-${st.tab}`);
    if (d.trials.length === 0 && st.tab !== "overview") {
      panel.append(h("div", { class: "empty" }, "No trials yet. They appear here as soon as the experiment starts them."));
      return;
    }
    const views: Record<Tab, () => void> = {
      overview: () => overview(panel, st),
      trials: () => {
        refreshTable = trialsTable(panel, st, () => select("compare"));
      },
      history: () => historyView(panel, st),
      parallel: () => parallelView(panel, st, renderPanel),
      intermediate: () => intermediateView(panel, st),
      slice: () => sliceView(panel, st),
      contour: () => contourView(panel, st),
      importance: () => importanceView(panel, st),
      compare: () => compareView(panel, st),
    };
    views[st.tab]();
  }

  async function load(): Promise<void> {
    try {
      const d = await api.detail(ns, name);
      if (disposed) return;
      st.d = d;
      st.byName = new Map(d.trials.map((t, i) => [t.name, i]));
      renderHead();
      renderPanel();
    } catch (e) {
      if (disposed) return;
      clear(panel);
      panel.append(errorBox(e instanceof ApiError && e.status === 404 ? `Experiment ${ns}/${name} does not exist (it may have been deleted).` : (e as Error).message));
    }
  }

  let reloadTimer = 0;
  const off = onChange((c) => {
    const d = st.d;
    if (c.type === "trials" && c.namespace === ns && c.experiment === name && d) {
      for (const row of c.rows) {
        const i = st.byName.get(row.name);
        if (i === undefined) {
          st.byName.set(row.name, d.trials.length);
          d.trials.push(row);
        } else d.trials[i] = row;
      }
      recomputeBest(d);
      scheduleRender();
    } else if (c.type === "experiment" && c.namespace === ns && c.name === name) {
      if (!d) {
        void load();
        return;
      }
      d.summary = c.summary;
      d.status = c.status;
      scheduleRender();
    } else if ((c.type === "touched" && c.namespace === ns && c.name === name) || c.type === "lagged") {
      // Written by another process: reload, at most every 2 s.
      if (!reloadTimer) reloadTimer = window.setTimeout(() => {
        reloadTimer = 0;
        if (!disposed) void load();
      }, 2000);
    } else if (c.type === "deleted" && c.namespace === ns && c.name === name) {
      clear(panel);
      panel.append(errorBox(`Experiment ${ns}/${name} was deleted.`));
    }
  });

  renderHead();
  renderPanel();
  panel.append(h("p", { class: "muted" }, "Loading…"));
  void load();
  return () => {
    disposed = true;
    off();
  };
}

function maximize(d: Detail): boolean {
  return d.experiment.spec.objective?.type === "maximize";
}

function recomputeBest(d: Detail): void {
  const max = maximize(d);
  let best: number | null = null;
  d.bestSoFar = d.trials.map((t) => {
    if (t.objective !== null) best = best === null ? t.objective : max ? Math.max(best, t.objective) : Math.min(best, t.objective);
    return best;
  });
}

function bestTrial(d: Detail): string | null {
  return d.summary?.bestTrial ?? null;
}

function trialHref(st: State, trial: string): string {
  return `#/e/${encodeURIComponent(st.ns)}/${encodeURIComponent(st.name)}/t/${encodeURIComponent(trial)}`;
}

function params(d: Detail): ParamSpec[] {
  return d.experiment.spec.parameters ?? [];
}

function isNumeric(p: ParamSpec): boolean {
  return p.parameterType === "double" || p.parameterType === "int";
}

function isLog(p: ParamSpec): boolean {
  return (p.feasibleSpace.distribution ?? "").toLowerCase().startsWith("log");
}

// ---------------------------------------------------------------------------- overview

function overview(panel: HTMLElement, st: State): void {
  const d = st.d!;
  const spec = d.experiment.spec;
  const s = d.summary;
  const best = bestTrial(d);
  const kv = (rows: [string, Node | string][]) => h("dl", { class: "kv" }, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const grid = h("div", { class: "cards" });
  grid.append(
    h(
      "div",
      { class: "card" },
      h("h2", {}, "Spec"),
      kv([
        ["Objective", `${spec.objective?.type ?? "?"} ${spec.objective?.objectiveMetricName ?? "?"}${spec.objective?.goal !== undefined ? ` (goal ${spec.objective.goal})` : ""}`],
        ["Additional metrics", (spec.objective?.additionalMetricNames ?? []).join(", ") || "—"],
        ["Algorithm", `${spec.algorithm?.algorithmName ?? "?"} ${(spec.algorithm?.algorithmSettings ?? []).map((a) => `${a.name}=${a.value}`).join(" ")}`],
        ["Early stopping", spec.earlyStopping ? spec.earlyStopping.algorithmName : "none"],
        ["Trials", `parallel ${spec.parallelTrialCount ?? "?"}, max ${spec.maxTrialCount ?? "∞"}, max failed ${spec.maxFailedTrialCount ?? "∞"}`],
        ["Created", `${relTime(d.created)} (${d.created})`],
        ["Duration", duration(s?.startTime ?? null, s?.completionTime ?? null)],
      ]),
    ),
    h(
      "div",
      { class: "card", id: "best-card" },
      h("h2", {}, "Best trial"),
      best
        ? kv([
            ["Trial", h("a", { href: trialHref(st, best) }, best)],
            [s.objectiveMetric ?? "objective", fmt(s.bestValue)],
            ...Object.entries(s.bestParams ?? {}).map(([k, v]) => [k, v] as [string, string]),
          ])
        : h("p", { class: "muted" }, "No trial has an objective value yet."),
    ),
    h(
      "div",
      { class: "card" },
      h("h2", {}, "Trials"),
      kv([
        ["Succeeded", String(s.succeeded)],
        ["Running", String(s.running)],
        ["Failed", String(s.failed)],
        ["Early stopped", String(s.earlyStopped)],
        ["Killed", String(s.killed)],
        ["Metrics unavailable", String(s.metricsUnavailable)],
      ]),
    ),
  );
  panel.append(grid);
  const params = spec.parameters ?? [];
  const ptab = h("table", { class: "list" }, h("thead", {}, h("tr", {}, h("th", {}, "Parameter"), h("th", {}, "Type"), h("th", {}, "Feasible space"))));
  const pb = h("tbody");
  for (const p of params) {
    const fs = p.feasibleSpace;
    pb.append(h("tr", {}, h("td", {}, p.name), h("td", {}, p.parameterType), h("td", {}, fs.list?.length ? fs.list.join(", ") : `[${fs.min}, ${fs.max}]${fs.step ? ` step ${fs.step}` : ""}${fs.distribution ? ` ${fs.distribution}` : ""}`)));
  }
  ptab.append(pb);
  panel.append(h("h2", {}, "Search space"), h("div", { class: "table-wrap" }, ptab));
  const conds = d.experiment.status?.conditions ?? [];
  const ctab = h("table", { class: "list" }, h("thead", {}, h("tr", {}, ...["Type", "Status", "Reason", "Message", "Last transition"].map((c) => h("th", {}, c)))));
  const cb = h("tbody");
  for (const c of conds) cb.append(h("tr", {}, h("td", {}, c.type), h("td", {}, c.status), h("td", {}, c.reason ?? ""), h("td", {}, c.message ?? ""), h("td", {}, c.lastTransitionTime ?? "")));
  ctab.append(cb);
  panel.append(h("h2", {}, "Conditions"), conds.length ? h("div", { class: "table-wrap" }, ctab) : h("p", { class: "muted" }, "No conditions yet."));
}

// ---------------------------------------------------------------------------- trials table

const ROW_H = 30;

/** Renders the table; returns a function that re-reads the trials and repaints the rows. */
function trialsTable(panel: HTMLElement, st: State, compare: () => void): () => void {
  const d = st.d!;
  const ps = params(d).map((p) => p.name);
  const metricNames = [d.experiment.spec.objective?.objectiveMetricName, ...(d.experiment.spec.objective?.additionalMetricNames ?? [])].filter(Boolean) as string[];
  let best = bestTrial(d);
  const cols: { key: string; label: string; num: boolean; get: (t: TrialRow) => string | number | null }[] = [
    { key: "seq", label: "#", num: true, get: (t) => t.seq },
    { key: "name", label: "Trial", num: false, get: (t) => t.name },
    { key: "status", label: "Status", num: false, get: (t) => t.status },
    ...metricNames.map((m) => ({ key: `m:${m}`, label: m, num: true, get: (t: TrialRow) => numOrNull(t.metrics[m]) })),
    ...ps.map((p) => ({ key: `p:${p}`, label: p, num: isNumeric(params(d).find((x) => x.name === p)!), get: (t: TrialRow) => t.params[p] ?? null })),
    { key: "duration", label: "Duration", num: false, get: (t) => duration(t.start, t.end) },
  ];
  const filter = h("input", { type: "search", placeholder: "Filter: text, or lr>0.01 accuracy<0.9  (press / )", "aria-label": "Filter trials", id: "trial-filter", value: st.filter }) as HTMLInputElement;
  const statusSel = h("select", { "aria-label": "Status filter" }) as HTMLSelectElement;
  statusSel.append(h("option", { value: "" }, "All statuses"), ...Object.keys(STATUS_COLORS).map((s) => h("option", { value: s }, s)));
  statusSel.value = st.statusFilter;
  const count = h("span", { class: "muted", id: "shown-count" });
  const cmp = h("button", { id: "compare-btn" }, "Compare selected");
  cmp.addEventListener("click", compare);
  panel.append(h("div", { class: "toolbar" }, filter, statusSel, count, cmp));

  const gridCols = `28px ${cols.map((c) => (c.key === "name" ? "minmax(180px,2fr)" : "minmax(90px,1fr)")).join(" ")}`;
  const header = h("div", { class: "vrow vhead", role: "row", style: `grid-template-columns:${gridCols}` }, h("span", {}, ""));
  for (const c of cols) {
    const b = h("button", { class: c.num ? "sort num" : "sort", role: "columnheader", "aria-sort": st.sort.key === c.key ? (st.sort.dir === 1 ? "ascending" : "descending") : "none" }, c.label + (st.sort.key === c.key ? (st.sort.dir === 1 ? " ▲" : " ▼") : ""));
    b.addEventListener("click", () => {
      st.sort = { key: c.key, dir: st.sort.key === c.key ? (-st.sort.dir as 1 | -1) : c.num ? -1 : 1 };
      redraw(true);
    });
    header.append(b);
  }
  const scroller = h("div", { class: "vtable", role: "grid", "aria-label": "Trials", id: "trials-table", tabindex: "0" });
  const spacer = h("div", { class: "vspace" });
  const rowsHost = h("div", { class: "vrows" });
  spacer.append(rowsHost);
  scroller.append(header, spacer);
  panel.append(scroller);

  let rows: TrialRow[] = [];
  function compute(): void {
    best = bestTrial(d);
    const q = st.filter.trim();
    const conds: ((t: TrialRow) => boolean)[] = [];
    for (const tok of q.split(/\s+/).filter(Boolean)) {
      const m = tok.match(/^([\w.-]+)(<=|>=|<|>|=)(.+)$/);
      if (m) {
        const [, k, op, vs] = m;
        const v = parseFloat(vs);
        conds.push((t) => {
          const raw = t.params[k] ?? t.metrics[k] ?? (k === "objective" ? String(t.objective) : undefined);
          if (raw === undefined) return false;
          const x = parseFloat(raw);
          if (op === "=") return raw === vs || x === v;
          return op === "<" ? x < v : op === ">" ? x > v : op === "<=" ? x <= v : x >= v;
        });
      } else {
        const low = tok.toLowerCase();
        conds.push((t) => t.name.toLowerCase().includes(low) || t.status.toLowerCase().includes(low) || Object.values(t.params).some((p) => p.toLowerCase().includes(low)));
      }
    }
    rows = d.trials.filter((t) => (!st.statusFilter || t.status === st.statusFilter) && conds.every((c) => c(t)));
    const col = cols.find((c) => c.key === st.sort.key) ?? cols[0];
    const dir = st.sort.dir;
    rows.sort((a, b) => {
      const x = col.get(a), y = col.get(b);
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      const nx = col.num ? parseFloat(String(x)) : NaN, ny = col.num ? parseFloat(String(y)) : NaN;
      if (!isNaN(nx) && !isNaN(ny)) return (nx - ny) * dir;
      return String(x).localeCompare(String(y)) * dir;
    });
    count.textContent = `${rows.length} of ${d.trials.length} trials · ${st.selected.size} selected`;
  }

  function paint(): void {
    const top = scroller.scrollTop;
    const height = scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - 5);
    const last = Math.min(rows.length, Math.ceil((top + height) / ROW_H) + 5);
    spacer.style.height = `${rows.length * ROW_H}px`;
    rowsHost.style.transform = `translateY(${first * ROW_H}px)`;
    clear(rowsHost);
    for (let i = first; i < last; i++) {
      const t = rows[i];
      const r = h("div", { class: `vrow${t.name === best ? " best" : ""}`, role: "row", tabindex: "-1", "data-trial": t.name, style: `grid-template-columns:${gridCols}` });
      const cb = h("input", { type: "checkbox", "aria-label": `Select ${t.name} for comparison` }) as HTMLInputElement;
      cb.checked = st.selected.has(t.name);
      cb.addEventListener("change", () => {
        if (cb.checked) st.selected.add(t.name);
        else st.selected.delete(t.name);
        count.textContent = `${rows.length} of ${d.trials.length} trials · ${st.selected.size} selected`;
      });
      r.append(cb);
      for (const c of cols) {
        const v = c.get(t);
        if (c.key === "name") r.append(h("a", { href: trialHref(st, t.name), title: t.name }, t.name + (t.name === best ? " ★" : "")));
        else if (c.key === "status") r.append(h("span", { title: t.message }, statusBadge(t.status)));
        else r.append(h("span", { class: c.num ? "num" : "" }, v === null ? "—" : c.num && typeof v !== "number" ? fmtText(v) : String(v)));
      }
      rowsHost.append(r);
    }
  }

  function redraw(resetScroll = false): void {
    compute();
    if (resetScroll) scroller.scrollTop = 0;
    paint();
  }
  scroller.addEventListener("scroll", () => requestAnimationFrame(paint));
  scroller.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      scroller.scrollTop += e.key === "ArrowDown" ? ROW_H : -ROW_H;
    }
  });
  let t = 0;
  filter.addEventListener("input", () => {
    clearTimeout(t);
    t = window.setTimeout(() => {
      st.filter = filter.value;
      redraw(true);
    }, 150);
  });
  filter.addEventListener("keydown", (e) => e.stopPropagation());
  statusSel.addEventListener("change", () => {
    st.statusFilter = statusSel.value;
    redraw(true);
  });
  const slash = (e: KeyboardEvent) => {
    if (e.key === "/" && document.activeElement?.tagName !== "INPUT" && document.activeElement?.tagName !== "TEXTAREA") {
      e.preventDefault();
      filter.focus();
    }
  };
  document.addEventListener("keydown", slash);
  new MutationObserver((_, obs) => {
    if (!panel.contains(scroller)) {
      document.removeEventListener("keydown", slash);
      obs.disconnect();
    }
  }).observe(panel, { childList: true });
  compute();
  requestAnimationFrame(() => {
    scroller.scrollTop = st.scroll;
    paint();
  });
  paint();
  return () => redraw(false);
}

function numOrNull(s: string | undefined): number | null {
  if (s === undefined) return null;
  const v = parseFloat(s);
  return isFinite(v) ? v : null;
}

function fmtText(v: string | number): string {
  const n = typeof v === "number" ? v : parseFloat(v);
  return isFinite(n) && /^[-+.\deE]+$/.test(String(v)) ? fmt(n) : String(v);
}

// ---------------------------------------------------------------------------- history

function historyView(panel: HTMLElement, st: State): void {
  const d = st.d!;
  const metric = d.summary.objectiveMetric ?? "objective";
  const host = h("div", { class: "plot", id: "history-plot" });
  panel.append(h("p", { class: "muted" }, `Objective (${metric}) of each trial in creation order, and the best so far. Click a point to open its trial.`), host, legend());
  const ys = extent(d.trials.map((t) => t.objective));
  const { cv, ctx, w, h: hh } = canvas(host, 380, `Optimization history of ${metric}`);
  const fr = axes(ctx, w, hh, [0, Math.max(1, d.trials.length - 1)], ys, "trial #", metric);
  const pts: Pt[] = d.trials.map((t, i) => ({ x: i, y: t.objective ?? NaN, key: t.name, color: STATUS_COLORS[t.status] ?? "#57606a" }));
  const line: [number, number][] = d.bestSoFar.map((v, i) => [i, v ?? NaN]);
  polyline(ctx, fr, line, "#cf222e", 2);
  drawPoints(cv, ctx, fr, pts, d.trials.length > 3000 ? 1.8 : 3, (k) => {
    const t = d.trials[st.byName.get(k)!];
    return `${t.name}\n${metric}: ${fmt(t.objective)}\n${Object.entries(t.params).map(([a, b]) => `${a}=${b}`).join("\n")}`;
  }, (k) => (location.hash = trialHref(st, k)));
}

function legend(): HTMLElement {
  return h("div", { class: "legend" }, ...Object.entries(STATUS_COLORS).filter(([s]) => s !== "Created" && s !== "Pending").map(([s, c]) => h("span", {}, h("i", { style: `background:${c}` }), s)), h("span", {}, h("i", { style: "background:#cf222e;height:2px" }), "best so far"));
}

// ---------------------------------------------------------------------------- parallel coordinates

interface Axis {
  name: string;
  kind: "num" | "cat";
  log: boolean;
  cats: string[];
  values: (number | null)[];
  lo: number;
  hi: number;
}

function buildAxes(d: Detail): Axis[] {
  const out: Axis[] = [];
  for (const p of params(d)) {
    if (isNumeric(p)) {
      const values = d.trials.map((t) => numOrNull(t.params[p.name]));
      const [lo, hi] = extent(values);
      out.push({ name: p.name, kind: "num", log: isLog(p) && lo > 0, cats: [], values, lo, hi });
    } else {
      const cats = p.feasibleSpace.list?.length ? [...p.feasibleSpace.list] : [...new Set(d.trials.map((t) => t.params[p.name]))].filter(Boolean).sort();
      const values = d.trials.map((t) => {
        const i = cats.indexOf(t.params[p.name]);
        return i < 0 ? null : i;
      });
      out.push({ name: p.name, kind: "cat", log: false, cats, values, lo: 0, hi: Math.max(1, cats.length - 1) });
    }
  }
  const obj = d.summary.objectiveMetric ?? "objective";
  const values = d.trials.map((t) => t.objective);
  const [lo, hi] = extent(values);
  out.push({ name: obj, kind: "num", log: false, cats: [], values, lo, hi });
  return out;
}

function parallelView(panel: HTMLElement, st: State, rerender: () => void): void {
  const d = st.d!;
  const all = buildAxes(d);
  const toggles = h("div", { class: "toolbar", id: "axis-toggles" }, h("span", { class: "muted" }, "Axes:"));
  for (const a of all) {
    const cb = h("input", { type: "checkbox", "aria-label": `Show axis ${a.name}` }) as HTMLInputElement;
    cb.checked = !st.hiddenAxes.has(a.name);
    cb.addEventListener("change", () => {
      if (cb.checked) st.hiddenAxes.delete(a.name);
      else st.hiddenAxes.add(a.name);
      rerender();
    });
    toggles.append(h("label", { class: "inline" }, cb, ` ${a.name}`));
  }
  const reset = h("button", { class: "small" }, "Clear brushes");
  reset.addEventListener("click", () => {
    st.brushes.clear();
    rerender();
  });
  const info = h("span", { class: "muted", id: "brush-count" });
  toggles.append(reset, info);
  const host = h("div", { class: "plot", id: "parallel-plot" });
  panel.append(toggles, h("p", { class: "muted" }, "Drag along an axis to brush a range (several axes combine); click an axis without dragging to clear its brush. Lines are coloured by the objective."), host);
  const axesShown = all.filter((a) => !st.hiddenAxes.has(a.name));
  if (axesShown.length < 2) {
    host.append(h("div", { class: "empty" }, "Show at least two axes."));
    return;
  }
  const { cv, ctx, w, h: H } = canvas(host, 420, "Parallel coordinates of parameters and objective");
  const top = 30, bottom = H - 30, left = 60, right = w - 60;
  const xs = axesShown.map((_, i) => left + ((right - left) * i) / (axesShown.length - 1));
  const ys = axesShown.map((a) => scale(a.lo, a.hi, bottom, top, a.log));
  const obj = all[all.length - 1];
  const byAxis = new Map(all.map((a) => [a.name, a]));
  const max = maximize(d);
  const active = (i: number) => {
    for (const [name, [a, b]] of st.brushes) {
      if (st.hiddenAxes.has(name)) continue;
      const ax = byAxis.get(name);
      if (!ax) continue;
      const v = ax.values[i];
      if (v === null || v < Math.min(a, b) || v > Math.max(a, b)) return false;
    }
    return true;
  };

  // All lines in grey, drawn once: while brushing only the active lines are redrawn on top.
  let background: HTMLCanvasElement | null = null;
  const backgroundCanvas = () => {
    if (background) return background;
    background = document.createElement("canvas");
    background.width = cv.width;
    background.height = cv.height;
    const b = background.getContext("2d")!;
    b.scale(cv.width / w, cv.height / H);
    b.strokeStyle = "rgba(140,149,159,0.18)";
    b.lineWidth = 1;
    b.beginPath();
    for (let i = 0; i < d.trials.length; i++) trace(b, i);
    b.stroke();
    return background;
  };

  function draw(): void {
    ctx.clearRect(0, 0, w, H);
    const n = d.trials.length;
    let shown = 0;
    const alpha = n > 3000 ? 0.12 : n > 500 ? 0.3 : 0.85;
    const brushing = [...st.brushes.keys()].some((k) => !st.hiddenAxes.has(k));
    if (brushing) ctx.drawImage(backgroundCanvas(), 0, 0, w, H);
    // Active lines bucketed by colour (one path per bucket).
    const buckets = new Map<number, number[]>();
    for (let i = 0; i < n; i++) {
      if (!active(i)) continue;
      shown++;
      const v = obj.values[i];
      const t = v === null ? -1 : Math.round(((v - obj.lo) / (obj.hi - obj.lo || 1)) * 15);
      const key = v === null ? -1 : max ? t : 15 - t;
      let l = buckets.get(key);
      if (!l) buckets.set(key, (l = []));
      l.push(i);
    }
    ctx.lineWidth = n > 500 ? 1 : 1.6;
    for (const [key, list] of [...buckets].sort((a, b) => a[0] - b[0])) {
      ctx.strokeStyle = key < 0 ? "rgba(110,119,129,0.5)" : ramp(key / 15);
      ctx.globalAlpha = brushing && shown < 1000 ? Math.max(alpha, 0.6) : alpha;
      ctx.beginPath();
      for (const i of list) trace(ctx, i);
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    // Axes, ticks, brushes.
    axesShown.forEach((a, k) => {
      const x = xs[k];
      ctx.strokeStyle = "#24292f";
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, bottom);
      ctx.stroke();
      ctx.fillStyle = "#24292f";
      ctx.textAlign = "center";
      ctx.textBaseline = "bottom";
      ctx.fillText(a.name, x, top - 8);
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      ctx.fillStyle = "#57606a";
      const ticks = a.kind === "cat" ? a.cats.map((_, i) => i) : ys[k].ticks(5);
      for (const t of ticks) ctx.fillText(a.kind === "cat" ? a.cats[t] : fmt(t), x - 5, ys[k](t));
      const b = st.brushes.get(a.name);
      if (b) {
        const y0 = ys[k](b[0]), y1 = ys[k](b[1]);
        ctx.fillStyle = "rgba(9,105,218,0.18)";
        ctx.strokeStyle = "#0969da";
        ctx.fillRect(x - 8, Math.min(y0, y1), 16, Math.abs(y1 - y0));
        ctx.strokeRect(x - 8, Math.min(y0, y1), 16, Math.abs(y1 - y0));
      }
    });
    info.textContent = `${shown} of ${n} trials in the brushed range`;
    cv.setAttribute("data-shown", String(shown));
  }

  function trace(c: CanvasRenderingContext2D, i: number): void {
    let started = false;
    for (let k = 0; k < axesShown.length; k++) {
      const v = axesShown[k].values[i];
      if (v === null || (axesShown[k].log && v <= 0)) {
        started = false;
        continue;
      }
      const y = ys[k](v);
      if (started) c.lineTo(xs[k], y);
      else c.moveTo(xs[k], y);
      started = true;
    }
  }

  const invert = (k: number, py: number) => {
    const a = axesShown[k];
    const t = (bottom - py) / (bottom - top);
    if (a.log) return 10 ** (Math.log10(a.lo) + t * (Math.log10(a.hi) - Math.log10(a.lo)));
    return a.lo + t * (a.hi - a.lo);
  };
  let drag: { k: number; y0: number } | null = null;
  let queued = false;
  cv.addEventListener("pointerdown", (e) => {
    const r = cv.getBoundingClientRect();
    const mx = e.clientX - r.left, my = e.clientY - r.top;
    const k = xs.findIndex((x) => Math.abs(x - mx) < 16);
    if (k < 0) return;
    drag = { k, y0: Math.min(bottom, Math.max(top, my)) };
    dragging = true;
    cv.setPointerCapture(e.pointerId);
    e.preventDefault();
  });
  cv.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const r = cv.getBoundingClientRect();
    const my = Math.min(bottom, Math.max(top, e.clientY - r.top));
    if (Math.abs(my - drag.y0) < 3) return;
    st.brushes.set(axesShown[drag.k].name, [invert(drag.k, drag.y0), invert(drag.k, my)]);
    if (!queued) {
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        draw();
      });
    }
  });
  cv.addEventListener("pointerup", (e) => {
    if (!drag) return;
    const r = cv.getBoundingClientRect();
    if (Math.abs(e.clientY - r.top - drag.y0) < 3) st.brushes.delete(axesShown[drag.k].name);
    drag = null;
    dragging = false;
    draw();
  });
  hover(cv, (mx) => {
    const k = xs.findIndex((x) => Math.abs(x - mx) < 16);
    return k < 0 ? null : { text: `${axesShown[k].name}: drag to brush`, key: "" };
  });
  draw();
}

// ---------------------------------------------------------------------------- intermediate values

function intermediateView(panel: HTMLElement, st: State): void {
  const host = h("div", { class: "plot", id: "intermediate-plot" });
  panel.append(host, h("p", { class: "muted" }, "Loading curves…"));
  void api
    .intermediate(st.ns, st.name)
    .then((r) => {
      panel.querySelector("p.muted")?.remove();
      if (r.curves.length === 0) {
        host.append(h("div", { class: "empty" }, "No intermediate values reported yet."));
        return;
      }
      const xs = extent(r.curves.flatMap((c) => c.points.map((p) => p[0])));
      const ys = extent(r.curves.flatMap((c) => c.points.map((p) => p[1])));
      const { cv, ctx, w, h: H } = canvas(host, 400, `Intermediate values of ${r.metric}`);
      const fr = axes(ctx, w, H, xs, ys, "report #", r.metric);
      ctx.globalAlpha = r.curves.length > 300 ? 0.35 : 0.8;
      for (const c of r.curves) {
        const stopped = c.status === "EarlyStopped";
        polyline(ctx, fr, c.points, stopped ? STATUS_COLORS.EarlyStopped : STATUS_COLORS[c.status] ?? "#57606a", stopped ? 1.5 : 1, stopped ? [4, 3] : []);
      }
      ctx.globalAlpha = 1;
      // Early-stopped trials end in a cross.
      ctx.strokeStyle = STATUS_COLORS.EarlyStopped;
      ctx.lineWidth = 2;
      let stoppedCount = 0;
      for (const c of r.curves) {
        if (c.status !== "EarlyStopped") continue;
        stoppedCount++;
        const [x, y] = c.points[c.points.length - 1];
        const px = fr.x(x), py = fr.y(y);
        ctx.beginPath();
        ctx.moveTo(px - 4, py - 4);
        ctx.lineTo(px + 4, py + 4);
        ctx.moveTo(px + 4, py - 4);
        ctx.lineTo(px - 4, py + 4);
        ctx.stroke();
      }
      const ends: Pt[] = r.curves.map((c) => ({ x: c.points[c.points.length - 1][0], y: c.points[c.points.length - 1][1], key: c.trial, color: "transparent" }));
      hover(cv, (mx, my) => {
        let best: Pt | null = null, bd = 150;
        for (const p of ends) {
          const dx = fr.x(p.x) - mx, dy = fr.y(p.y) - my;
          if (dx * dx + dy * dy < bd) {
            bd = dx * dx + dy * dy;
            best = p;
          }
        }
        return best ? { text: `${best.key}: ${fmt(best.y)} at report ${best.x}`, key: best.key } : null;
      }, (k) => (location.hash = trialHref(st, k)));
      panel.append(
        h("p", { class: "muted" }, `${r.curves.length} curves${r.truncated ? " (the latest 1000 trials)" : ""}; ${stoppedCount} early-stopped trials drawn dashed and ending in ✕.`),
      );
    })
    .catch((e) => panel.append(errorBox((e as Error).message)));
}

// ---------------------------------------------------------------------------- slice

function sliceView(panel: HTMLElement, st: State): void {
  const d = st.d!;
  const metric = d.summary.objectiveMetric ?? "objective";
  const grid = h("div", { class: "small-multiples" });
  panel.append(h("p", { class: "muted" }, `${metric} against each parameter (one point per trial, coloured by creation order).`), grid);
  const ys = extent(d.trials.map((t) => t.objective));
  const n = d.trials.length;
  for (const p of params(d)) {
    const cell = h("div", { class: "plot" });
    grid.append(cell);
    const num = isNumeric(p);
    const cats = num ? [] : p.feasibleSpace.list ?? [...new Set(d.trials.map((t) => t.params[p.name]))];
    const xv = d.trials.map((t) => (num ? numOrNull(t.params[p.name]) : cats.indexOf(t.params[p.name])));
    const xd: [number, number] = num ? extent(xv) : [-0.5, cats.length - 0.5];
    const { cv, ctx, w, h: H } = canvas(cell, 260, `${metric} by ${p.name}`);
    const fr = axes(ctx, w, H, xd, ys, p.name + (num ? "" : ` (${cats.join(", ")})`), metric, num && isLog(p) && xd[0] > 0);
    const pts: Pt[] = d.trials.map((t, i) => ({ x: (xv[i] ?? NaN) + (num ? 0 : (((i * 7919) % 100) / 100 - 0.5) * 0.4), y: t.objective ?? NaN, key: t.name, color: ramp(i / Math.max(1, n - 1)) }));
    drawPoints(cv, ctx, fr, pts, n > 3000 ? 1.5 : 2.5, (k) => {
      const t = d.trials[st.byName.get(k)!];
      return `${t.name}\n${p.name}=${t.params[p.name]}\n${metric}=${fmt(t.objective)}`;
    }, (k) => (location.hash = trialHref(st, k)));
  }
}

// ---------------------------------------------------------------------------- contour

function contourView(panel: HTMLElement, st: State): void {
  const d = st.d!;
  const ps = params(d);
  if (ps.length < 2) {
    panel.append(h("div", { class: "empty" }, "A contour plot needs at least two parameters."));
    return;
  }
  const metric = d.summary.objectiveMetric ?? "objective";
  const sx = h("select", { "aria-label": "x parameter" }) as HTMLSelectElement;
  const sy = h("select", { "aria-label": "y parameter" }) as HTMLSelectElement;
  for (const p of ps) {
    sx.append(h("option", { value: p.name }, p.name));
    sy.append(h("option", { value: p.name }, p.name));
  }
  sx.value = ps[0].name;
  sy.value = ps[1].name;
  const host = h("div", { class: "plot", id: "contour-plot" });
  panel.append(h("div", { class: "toolbar" }, h("label", { class: "inline" }, "x ", sx), h("label", { class: "inline" }, "y ", sy)), h("p", { class: "muted" }, `Mean ${metric} of the trials in each cell of a 24×24 grid (brighter is better), with the trials as points.`), host);
  const draw = () => {
    clear(host);
    const px = ps.find((p) => p.name === sx.value)!, py = ps.find((p) => p.name === sy.value)!;
    const coord = (p: ParamSpec, t: TrialRow) => {
      if (isNumeric(p)) return numOrNull(t.params[p.name]);
      const cats = p.feasibleSpace.list ?? [];
      const i = cats.indexOf(t.params[p.name]);
      return i < 0 ? null : i;
    };
    const pts = d.trials.filter((t) => t.objective !== null).map((t) => ({ x: coord(px, t), y: coord(py, t), v: t.objective!, t }));
    const valid = pts.filter((p) => p.x !== null && p.y !== null) as { x: number; y: number; v: number; t: TrialRow }[];
    const xd = isNumeric(px) ? extent(valid.map((p) => p.x)) : ([-0.5, (px.feasibleSpace.list?.length ?? 1) - 0.5] as [number, number]);
    const yd = isNumeric(py) ? extent(valid.map((p) => p.y)) : ([-0.5, (py.feasibleSpace.list?.length ?? 1) - 0.5] as [number, number]);
    const xl = isNumeric(px) && isLog(px) && xd[0] > 0, yl = isNumeric(py) && isLog(py) && yd[0] > 0;
    const { cv, ctx, w, h: H } = canvas(host, 420, `Contour of ${metric} over ${px.name} and ${py.name}`);
    const fr = axes(ctx, w, H, xd, yd, px.name, py.name, xl, yl);
    const G = 24;
    const sum = new Float64Array(G * G), cnt = new Uint32Array(G * G);
    const cell = (v: number, s: typeof fr.x) => Math.min(G - 1, Math.max(0, Math.floor(((s(v) - (s === fr.x ? fr.left : fr.bottom)) / (s === fr.x ? fr.right - fr.left : fr.top - fr.bottom)) * G)));
    for (const p of valid) {
      const i = cell(p.x, fr.x), j = cell(p.y, fr.y);
      sum[j * G + i] += p.v;
      cnt[j * G + i]++;
    }
    const [lo, hi] = extent(valid.map((p) => p.v));
    const max = maximize(d);
    const cw = (fr.right - fr.left) / G, ch = (fr.bottom - fr.top) / G;
    for (let j = 0; j < G; j++)
      for (let i = 0; i < G; i++) {
        if (!cnt[j * G + i]) continue;
        const m = sum[j * G + i] / cnt[j * G + i];
        const t = (m - lo) / (hi - lo || 1);
        ctx.fillStyle = ramp(max ? t : 1 - t);
        ctx.globalAlpha = 0.85;
        ctx.fillRect(fr.left + i * cw, fr.bottom - (j + 1) * ch, cw + 0.5, ch + 0.5);
      }
    ctx.globalAlpha = 1;
    drawPoints(cv, ctx, fr, valid.map((p) => ({ x: p.x, y: p.y, key: p.t.name, color: "#24292f" })), 1.5, (k) => {
      const t = d.trials[st.byName.get(k)!];
      return `${t.name}\n${px.name}=${t.params[px.name]} ${py.name}=${t.params[py.name]}\n${metric}=${fmt(t.objective)}`;
    }, (k) => (location.hash = trialHref(st, k)));
  };
  sx.addEventListener("change", draw);
  sy.addEventListener("change", draw);
  draw();
}

// ---------------------------------------------------------------------------- importance

function importanceView(panel: HTMLElement, st: State): void {
  const d = st.d!;
  const imp = [...d.importance].sort((a, b) => b.share - a.share);
  panel.append(
    h(
      "p",
      { class: "muted" },
      "Share of the objective's variance explained by each parameter alone (first-order variance decomposition: trials grouped by the parameter's value, numeric values in 10 equal-count bins; η² = between-group / total sum of squares). Computed on the server over completed trials.",
    ),
  );
  const list = h("div", { class: "bars", id: "importance" });
  for (const i of imp)
    list.append(
      h("div", { class: "bar-row" }, h("span", { class: "bar-label" }, i.name), h("span", { class: "bar" }, h("i", { style: `width:${(i.share * 100).toFixed(1)}%` })), h("span", { class: "num" }, `${(i.share * 100).toFixed(1)}% (η² ${i.eta2.toFixed(2)})`)),
    );
  panel.append(imp.length ? list : h("div", { class: "empty" }, "No completed trials with an objective yet."));
}

// ---------------------------------------------------------------------------- compare

function compareView(panel: HTMLElement, st: State): void {
  const d = st.d!;
  let names = [...st.selected].filter((n) => st.byName.has(n));
  if (names.length === 0) {
    // Default: the five best trials.
    const max = maximize(d);
    names = d.trials
      .filter((t) => t.objective !== null)
      .sort((a, b) => (max ? b.objective! - a.objective! : a.objective! - b.objective!))
      .slice(0, 5)
      .map((t) => t.name);
    panel.append(h("p", { class: "muted" }, "No trials selected in the Trials tab: showing the five best."));
  }
  if (names.length === 0) {
    panel.append(h("div", { class: "empty" }, "Nothing to compare yet."));
    return;
  }
  const trials = names.map((n) => d.trials[st.byName.get(n)!]);
  const keys = [...new Set(trials.flatMap((t) => Object.keys(t.metrics)))];
  const table = h("table", { class: "list compare", id: "compare-table" });
  table.append(h("thead", {}, h("tr", {}, h("th", {}, ""), ...trials.map((t) => h("th", {}, h("a", { href: trialHref(st, t.name) }, t.name))))));
  const tb = h("tbody");
  const row = (label: string, vals: (string | Node)[], diff = false) => tb.append(h("tr", { class: diff ? "diff" : "" }, h("th", { scope: "row" }, label), ...vals.map((v) => h("td", {}, v))));
  row("Status", trials.map((t) => statusBadge(t.status)));
  row("Objective", trials.map((t) => fmt(t.objective)));
  for (const k of keys) row(k, trials.map((t) => t.metrics[k] ?? "—"));
  for (const p of params(d)) {
    const vals = trials.map((t) => t.params[p.name] ?? "—");
    row(p.name, vals, new Set(vals).size > 1);
  }
  row("Duration", trials.map((t) => duration(t.start, t.end)));
  table.append(tb);
  panel.append(h("div", { class: "table-wrap" }, table));
}
