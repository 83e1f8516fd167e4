// katib-rs web UI: a hash-routed single page app in plain TypeScript.
import "./style.css";
import { ApiError, api, onChange, type Change, type ExperimentItem } from "./api";
import { experimentPage } from "./experiment";
import { createPage } from "./create";
import { trialPage } from "./trial";
import { h, clear, statusBadge, relTime, errorBox, setTitle } from "./dom";
import { fmt } from "./plots";

const app = document.getElementById("app")!;
let cleanup: (() => void) | null = null;

function route(): void {
  cleanup?.();
  cleanup = null;
  clear(app);
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const q = new URLSearchParams(query ?? "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) cleanup = listPage(app, q);
  else if (parts[0] === "new") cleanup = createPage(app);
  else if (parts[0] === "e" && parts.length === 3) cleanup = experimentPage(app, parts[1], parts[2], q);
  else if (parts[0] === "e" && parts.length === 5 && parts[3] === "t") cleanup = trialPage(app, parts[1], parts[2], parts[4]);
  else {
    setTitle("Not found");
    app.append(errorBox(`No page at ${hash}.`), h("a", { href: "#/" }, "Back to the experiments"));
  }
  app.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
route();

function listPage(root: HTMLElement, q: URLSearchParams): () => void {
  setTitle("Experiments");
  let ns = q.get("namespace") ?? "";
  let items: ExperimentItem[] = [];
  let error: string | null = null;
  let loaded = false;
  const head = h("div", { class: "page-head" }, h("h1", {}, "Experiments"));
  const nsSelect = h("select", { "aria-label": "Namespace", id: "ns-filter" }) as HTMLSelectElement;
  nsSelect.addEventListener("change", () => {
    ns = nsSelect.value;
    history.replaceState(null, "", ns ? `#/?namespace=${encodeURIComponent(ns)}` : "#/");
    render();
  });
  head.append(h("label", { class: "inline" }, "Namespace ", nsSelect), h("a", { class: "button primary", href: "#/new" }, "New experiment"));
  const body = h("div");
  root.append(head, body);

  function render(): void {
    const namespaces = [...new Set(items.map((e) => e.namespace))].sort();
    clear(nsSelect);
    nsSelect.append(h("option", { value: "" }, "All namespaces"), ...namespaces.map((n) => h("option", { value: n }, n)));
    nsSelect.value = namespaces.includes(ns) ? ns : "";
    clear(body);
    if (error) {
      body.append(errorBox(error));
      return;
    }
    if (!loaded) {
      body.append(h("p", { class: "muted" }, "Loading…"));
      return;
    }
    const shown = items.filter((e) => !ns || e.namespace === ns);
    if (shown.length === 0) {
      body.append(
        h("div", { class: "empty" }, h("p", {}, "No experiments yet."), h("p", {}, "Run one with ", h("code", {}, "katib run --ui examples/random.yaml"), " or ", h("a", { href: "#/new" }, "create one from YAML"), ".")),
      );
      return;
    }
    const table = h("table", { class: "list", id: "experiments" });
    table.append(
      h("thead", {}, h("tr", {}, ...["Status", "Name", "Namespace", "Progress", "Best value", "Succeeded", "Running", "Failed", "Created", ""].map((c) => h("th", { scope: "col" }, c)))),
    );
    const tb = h("tbody");
    for (const e of shown) {
      const s = e.summary;
      const done = s.succeeded + s.failed + s.killed + s.earlyStopped + s.metricsUnavailable;
      const max = s.maxTrialCount ?? 0;
      const pct = max > 0 ? Math.min(100, (100 * done) / max) : 0;
      const del = h("button", { class: "danger small", "aria-label": `Delete ${e.name}` }, "Delete");
      del.addEventListener("click", () => confirmDelete(e));
      tb.append(
        h(
          "tr",
          { "data-name": e.name },
          h("td", {}, statusBadge(e.status)),
          h("td", {}, h("a", { href: `#/e/${encodeURIComponent(e.namespace)}/${encodeURIComponent(e.name)}` }, e.name)),
          h("td", {}, e.namespace),
          h("td", {}, h("div", { class: "progress", title: `${done} of ${max || "?"} trials done` }, h("div", { style: `width:${pct}%` })), h("span", { class: "muted small" }, `${done}/${max || "?"}`)),
          h("td", { class: "num" }, s.bestValue === null ? "—" : `${fmt(s.bestValue)} ${s.objectiveMetric ?? ""}`),
          h("td", { class: "num" }, String(s.succeeded)),
          h("td", { class: "num" }, String(s.running)),
          h("td", { class: "num" }, String(s.failed)),
          h("td", { title: e.created }, relTime(e.created)),
          h("td", {}, del),
        ),
      );
    }
    table.append(tb);
    body.append(h("div", { class: "table-wrap" }, table));
  }

  function confirmDelete(e: ExperimentItem): void {
    const dlg = h("dialog", { class: "confirm", "aria-labelledby": "dlg-title" }) as HTMLDialogElement;
    const yes = h("button", { class: "danger", id: "confirm-delete" }, "Delete");
    const no = h("button", {}, "Cancel");
    const msg = h("p", {}, `Delete experiment ${e.namespace}/${e.name}, its trials and their metrics? A running experiment is stopped first. This cannot be undone.`);
    dlg.append(h("h2", { id: "dlg-title" }, "Delete experiment?"), msg, h("div", { class: "row" }, no, yes));
    document.body.append(dlg);
    dlg.showModal();
    no.focus();
    no.addEventListener("click", () => dlg.close());
    dlg.addEventListener("close", () => dlg.remove());
    yes.addEventListener("click", async () => {
      yes.setAttribute("disabled", "");
      try {
        await api.remove(e.namespace, e.name);
        items = items.filter((x) => !(x.namespace === e.namespace && x.name === e.name));
        dlg.close();
        render();
      } catch (err) {
        msg.replaceWith(errorBox((err as Error).message));
        yes.removeAttribute("disabled");
      }
    });
  }

  async function load(): Promise<void> {
    try {
      items = (await api.list()).experiments;
      error = null;
    } catch (e) {
      error = e instanceof ApiError ? e.message : String(e);
    }
    loaded = true;
    render();
  }

  let pending = false;
  const off = onChange((c: Change) => {
    if (c.type === "experiment") {
      const i = items.findIndex((e) => e.namespace === c.namespace && e.name === c.name);
      const item = { namespace: c.namespace, name: c.name, status: c.status, created: c.created, updated: "", summary: c.summary };
      if (i >= 0) items[i] = { ...items[i], ...item };
      else items.unshift(item);
    } else if (c.type === "deleted") {
      items = items.filter((e) => !(e.namespace === c.namespace && e.name === c.name));
    } else if (c.type === "touched" || c.type === "lagged") {
      void load();
      return;
    } else return;
    if (!pending) {
      pending = true;
      setTimeout(() => {
        pending = false;
        render();
      }, 250);
    }
  });
  render();
  void load();
  return off;
}
