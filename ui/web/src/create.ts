// Create an experiment from YAML: validated on the server with katib's own rules; problems
// are shown inline next to their lines.
import { ApiError, api, type Problem } from "./api";
import { h, clear, errorBox, setTitle } from "./dom";
import template from "../../../examples/random.yaml?raw";

export function createPage(root: HTMLElement): () => void {
  setTitle("New experiment");
  const text = h("textarea", { id: "yaml", spellcheck: "false", "aria-label": "Experiment YAML", "aria-describedby": "problems", rows: "30", wrap: "off" }) as HTMLTextAreaElement;
  text.value = template.replace("name: random-example", "name: random-from-ui");
  const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
  const problems = h("div", { id: "problems", "aria-live": "polite" });
  const where = h("p", { class: "muted small", id: "work-dir" });
  const validate = h("button", { id: "validate" }, "Validate");
  const create = h("button", { class: "primary", id: "create" }, "Create and run");
  root.append(
    h("div", { class: "page-head" }, h("div", {}, h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Experiments"), " /"), h("h1", {}, "New experiment"))),
    h("p", { class: "muted" }, "Paste or edit a Katib v1beta1 Experiment. It is checked with the same defaults and validation as ", h("code", {}, "katib validate"), ", then run on this machine like ", h("code", {}, "katib run"), ". Ctrl+Enter validates."),
    h("div", { class: "editor" }, gutter, text),
    h("div", { class: "row" }, where, validate, create),
    problems,
  );
  void api
    .info()
    .then((i) => {
      if (!i.canLaunch) {
        create.setAttribute("disabled", "");
        where.textContent = "This server only shows experiments; start it with katib ui or katib run --ui to run them.";
      } else if (i.workDir) where.textContent = `Trial commands run in ${i.workDir} (katib ui --work-dir).`;
    })
    .catch(() => {});
  let marked = new Map<number, string>();

  function paintGutter(): void {
    const n = text.value.split("\n").length;
    clear(gutter);
    for (let i = 1; i <= n; i++) {
      const msg = marked.get(i);
      gutter.append(h("div", msg ? { class: "bad", title: msg } : {}, String(i)));
    }
    gutter.scrollTop = text.scrollTop;
  }
  text.addEventListener("scroll", () => (gutter.scrollTop = text.scrollTop));
  text.addEventListener("input", () => {
    marked = new Map();
    paintGutter();
  });
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      void check(false);
    }
  });

  function goTo(line: number): void {
    const lines = text.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((a, l) => a + l.length + 1, 0);
    text.focus();
    text.setSelectionRange(start, start + (lines[line - 1]?.length ?? 0));
    const lh = parseFloat(getComputedStyle(text).lineHeight) || 18;
    text.scrollTop = Math.max(0, (line - 5) * lh);
  }

  function show(list: Problem[]): void {
    clear(problems);
    marked = new Map();
    for (const p of list) if (p.line) marked.set(p.line, p.message);
    paintGutter();
    const ul = h("ul", { class: "problems" });
    for (const p of list) {
      const where = p.line ? `line ${p.line}${p.column ? `:${p.column}` : ""}` : "";
      const item = h("li", { class: "problem" }, where ? h("button", { class: "link", title: "Go to the line" }, where) : "", p.field ? h("code", {}, p.field) : "", " ", p.message);
      item.querySelector("button")?.addEventListener("click", () => goTo(p.line!));
      ul.append(item);
    }
    problems.append(h("div", { class: "error", role: "alert" }, `${list.length} problem${list.length === 1 ? "" : "s"} found:`), ul);
  }

  async function check(run: boolean): Promise<void> {
    validate.setAttribute("disabled", "");
    create.setAttribute("disabled", "");
    clear(problems);
    try {
      if (run) {
        const r = await api.create(text.value);
        location.hash = `#/e/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}`;
        return;
      }
      const r = await api.validate(text.value);
      marked = new Map();
      paintGutter();
      problems.append(h("div", { class: "ok", role: "status" }, `Valid: experiment ${r.namespace}/${r.name}.`));
    } catch (e) {
      if (e instanceof ApiError && e.problems.length) show(e.problems);
      else problems.append(errorBox((e as Error).message));
    } finally {
      validate.removeAttribute("disabled");
      create.removeAttribute("disabled");
    }
  }
  validate.addEventListener("click", () => void check(false));
  create.addEventListener("click", () => void check(true));
  paintGutter();
  return () => {};
}
