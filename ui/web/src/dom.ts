// Tiny DOM helpers.
import { STATUS_COLORS } from "./plots";

type Child = Node | string | null | undefined | false;

export function h(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) el.firstChild.remove();
}

export function statusBadge(status: string): HTMLElement {
  return h("span", { class: `badge s-${status}`, style: `--c:${STATUS_COLORS[status] ?? "#57606a"}` }, status);
}

export function errorBox(msg: string): HTMLElement {
  return h("div", { class: "error", role: "alert" }, msg);
}

export function setTitle(t: string): void {
  document.title = `${t} · Katib`;
}

export function relTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const t = Date.parse(iso);
  if (isNaN(t)) return iso;
  const s = (Date.now() - t) / 1000;
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(t).toISOString().slice(0, 16).replace("T", " ");
}

export function duration(a: string | null, b: string | null): string {
  if (!a) return "—";
  const t0 = Date.parse(a), t1 = b ? Date.parse(b) : Date.now();
  if (isNaN(t0) || isNaN(t1)) return "—";
  const s = Math.max(0, Math.round((t1 - t0) / 1000));
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
}
