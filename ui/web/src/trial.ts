// The trial page: status, parameters, metric curves and the trial's log.
import { ApiError, api, onChange } from "./api";
import { h, clear, statusBadge, errorBox, setTitle, duration } from "./dom";
import { axes, canvas, drawPoints, extent, fmt, polyline, type Pt } from "./plots";

const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#57606a"];

export function trialPage(root: HTMLElement, ns: string, exp: string, name: string): () => void {
  setTitle(name);
  const expHref = `#/e/${encodeURIComponent(ns)}/${encodeURIComponent(exp)}`;
  const head = h("div", { class: "page-head" });
  const body = h("div");
  const logBox = h("pre", { class: "log", id: "trial-log", tabindex: "0", "aria-label": "Trial log" }, "Loading log…");
  root.append(head, body);
  let disposed = false;

  async function load(): Promise<void> {
    try {
      const [r, log] = await Promise.all([api.trial(ns, exp, name), api.log(ns, exp, name).catch((e: Error) => `(${e.message})`)]);
      if (disposed) return;
      render(r.trial, r.metrics, log);
    } catch (e) {
      if (disposed) return;
      clear(body);
      body.append(errorBox(e instanceof ApiError && e.status === 404 ? `Trial ${name} does not exist in ${ns}/${exp}.` : (e as Error).message), h("a", { href: expHref }, "Back to the experiment"));
    }
  }

  function render(trial: any, metrics: Record<string, { time: string; value: string }[]>, log: string): void {
    const conds: any[] = trial?.status?.conditions ?? [];
    const status = [...conds].reverse().find((c) => c.status === "True")?.type ?? conds[conds.length - 1]?.type ?? "Created";
    clear(head);
    head.append(h("div", {}, h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Experiments"), " / ", h("a", { href: expHref }, exp), " /"), h("h1", {}, name, " ", statusBadge(status))));
    clear(body);
    const obs: any[] = trial?.status?.observation?.metrics ?? [];
    const kv = (rows: [string, string | Node][]) => h("dl", { class: "kv" }, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    body.append(
      h(
        "div",
        { class: "cards" },
        h("div", { class: "card", id: "trial-params" }, h("h2", {}, "Parameters"), kv((trial?.spec?.parameterAssignments ?? []).map((a: any) => [a.name, String(a.value)]))),
        h("div", { class: "card" }, h("h2", {}, "Observation"), obs.length ? kv(obs.map((m: any) => [m.name, `min ${m.min} · max ${m.max} · latest ${m.latest}`])) : h("p", { class: "muted" }, "No metrics reported yet.")),
        h(
          "div",
          { class: "card" },
          h("h2", {}, "Status"),
          kv([
            ["Started", trial?.status?.startTime ?? "—"],
            ["Completed", trial?.status?.completionTime ?? "—"],
            ["Duration", duration(trial?.status?.startTime ?? null, trial?.status?.completionTime ?? null)],
            ...conds.filter((c) => c.status === "True").slice(-1).map((c) => ["Message", `${c.reason ?? ""}: ${c.message ?? ""}`] as [string, string]),
          ]),
        ),
      ),
    );
    const names = Object.keys(metrics);
    body.append(h("h2", {}, "Metrics"));
    if (names.length === 0) body.append(h("div", { class: "empty" }, "No metric logs for this trial."));
    for (const [k, m] of names.entries()) {
      const host = h("div", { class: "plot metric-plot" });
      body.append(host);
      const vals = metrics[m].map((r, i) => [i + 1, parseFloat(r.value)] as [number, number]).filter((p) => isFinite(p[1]));
      if (vals.length === 0) {
        host.append(h("p", { class: "muted" }, `${m}: no numeric values (${metrics[m].map((r) => r.value).slice(0, 3).join(", ")})`));
        continue;
      }
      const { cv, ctx, w, h: H } = canvas(host, 220, `${m} over time`);
      const fr = axes(ctx, w, H, extent(vals.map((v) => v[0])), extent(vals.map((v) => v[1])), "report #", m);
      polyline(ctx, fr, vals, COLORS[k % COLORS.length], 2);
      const pts: Pt[] = vals.map(([x, y], i) => ({ x, y, key: String(i), color: COLORS[k % COLORS.length] }));
      drawPoints(cv, ctx, fr, pts, 2.5, (key) => {
        const r = metrics[m][+key];
        return `${m} = ${r.value}\n${r.time}`;
      });
    }
    body.append(h("h2", {}, "Log ", h("span", { class: "muted small" }, "(stdout and stderr of the trial's process; the last 512 KiB)")));
    logBox.textContent = log || "(empty)";
    body.append(logBox);
  }

  let timer = 0;
  const off = onChange((c) => {
    if (c.type === "trials" && c.namespace === ns && c.experiment === exp && c.rows.some((r) => r.name === name)) {
      clearTimeout(timer);
      timer = window.setTimeout(() => void load(), 300);
    }
  });
  void load();
  return () => {
    disposed = true;
    off();
  };
}

export { fmt };
