// Canvas plots: drawn by hand so 10,000 trials stay interactive (one path per colour
// bucket, no DOM node per point).

export const STATUS_COLORS: Record<string, string> = {
  Succeeded: "#1a7f37",
  Running: "#0969da",
  Created: "#6e7781",
  Pending: "#6e7781",
  Failed: "#cf222e",
  Killed: "#57606a",
  EarlyStopped: "#bc4c00",
  MetricsUnavailable: "#8250df",
};

export interface Scale {
  (v: number): number;
  domain: [number, number];
  log: boolean;
  ticks(n: number): number[];
}

export function scale(d0: number, d1: number, r0: number, r1: number, log = false): Scale {
  if (log && (d0 <= 0 || d1 <= 0)) log = false;
  let a = log ? Math.log10(d0) : d0;
  let b = log ? Math.log10(d1) : d1;
  if (!isFinite(a) || !isFinite(b)) {
    a = 0;
    b = 1;
  }
  if (a === b) {
    const pad = a === 0 ? 1 : Math.abs(a) * 0.05;
    a -= pad;
    b += pad;
  }
  const f = ((v: number) => r0 + (((log ? Math.log10(v) : v) - a) / (b - a)) * (r1 - r0)) as Scale;
  f.domain = [d0, d1];
  f.log = log;
  f.ticks = (n: number) => {
    if (log) {
      const out: number[] = [];
      for (let e = Math.floor(a); e <= Math.ceil(b); e++) {
        const v = 10 ** e;
        if (e >= a - 1e-9 && e <= b + 1e-9) out.push(v);
      }
      return out.length >= 2 ? out : [10 ** a, 10 ** b];
    }
    return niceTicks(a, b, n);
  };
  return f;
}

export function niceTicks(a: number, b: number, n: number): number[] {
  const span = b - a;
  if (!(span > 0)) return [a];
  const step0 = span / Math.max(1, n);
  const mag = 10 ** Math.floor(Math.log10(step0));
  const norm = step0 / mag;
  const step = (norm >= 5 ? 10 : norm >= 2 ? 5 : norm >= 1 ? 2 : 1) * mag;
  const out: number[] = [];
  for (let v = Math.ceil(a / step) * step; v <= b + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

export function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || !isFinite(v)) return "—";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return +v.toPrecision(4) + "";
}

/** A canvas filling `host`'s width at `height` CSS pixels, scaled for the display. */
export function canvas(host: HTMLElement, height: number, label: string): { cv: HTMLCanvasElement; ctx: CanvasRenderingContext2D; w: number; h: number } {
  const cv = document.createElement("canvas");
  cv.setAttribute("role", "img");
  cv.setAttribute("aria-label", label);
  host.append(cv);
  const w = Math.max(280, host.clientWidth || 800);
  const dpr = window.devicePixelRatio || 1;
  cv.width = Math.round(w * dpr);
  cv.height = Math.round(height * dpr);
  cv.style.width = `${w}px`;
  cv.style.height = `${height}px`;
  const ctx = cv.getContext("2d")!;
  ctx.scale(dpr, dpr);
  ctx.font = "12px system-ui, sans-serif";
  return { cv, ctx, w, h: height };
}

export interface Frame {
  x: Scale;
  y: Scale;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

/** Axes with ticks and labels. */
export function axes(ctx: CanvasRenderingContext2D, w: number, h: number, xd: [number, number], yd: [number, number], xLabel: string, yLabel: string, xLog = false, yLog = false): Frame {
  const left = 64, right = w - 16, top = 12, bottom = h - 40;
  const x = scale(xd[0], xd[1], left, right, xLog);
  const y = scale(yd[0], yd[1], bottom, top, yLog);
  ctx.strokeStyle = "#d0d7de";
  ctx.fillStyle = "#57606a";
  ctx.lineWidth = 1;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of x.ticks(Math.max(2, Math.floor((right - left) / 90)))) {
    const px = x(t);
    ctx.beginPath();
    ctx.moveTo(px, top);
    ctx.lineTo(px, bottom);
    ctx.stroke();
    ctx.fillText(fmt(t), px, bottom + 4);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of y.ticks(Math.max(2, Math.floor((bottom - top) / 40)))) {
    const py = y(t);
    ctx.beginPath();
    ctx.moveTo(left, py);
    ctx.lineTo(right, py);
    ctx.stroke();
    ctx.fillText(fmt(t), left - 6, py);
  }
  ctx.strokeStyle = "#8c959f";
  ctx.strokeRect(left, top, right - left, bottom - top);
  ctx.fillStyle = "#24292f";
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.fillText(xLabel, (left + right) / 2, h - 2);
  ctx.save();
  ctx.translate(12, (top + bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(yLabel, 0, 0);
  ctx.restore();
  return { x, y, left, right, top, bottom };
}

export function extent(vals: Iterable<number | null | undefined>): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (const v of vals) {
    if (v === null || v === undefined || !isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo === Infinity ? [0, 1] : [lo, hi];
}

/** Viridis-like colour for t in 0..1. */
export function ramp(t: number): string {
  const stops = [
    [68, 1, 84],
    [59, 82, 139],
    [33, 145, 140],
    [94, 201, 98],
    [214, 160, 0],
  ];
  t = Math.min(1, Math.max(0, isFinite(t) ? t : 0));
  const p = t * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(p));
  const f = p - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

export interface Pt {
  x: number;
  y: number;
  key: string;
  color: string;
}

/** Points grouped by colour (one path each) with hover tooltip and click. */
export function drawPoints(cv: HTMLCanvasElement, ctx: CanvasRenderingContext2D, fr: Frame, pts: Pt[], r: number, tip: (key: string) => string, onClick?: (key: string) => void): void {
  const by = new Map<string, Pt[]>();
  for (const p of pts) {
    if (!isFinite(p.x) || !isFinite(p.y)) continue;
    let l = by.get(p.color);
    if (!l) by.set(p.color, (l = []));
    l.push(p);
  }
  ctx.globalAlpha = pts.length > 2000 ? 0.6 : 0.9;
  for (const [color, l] of by) {
    ctx.fillStyle = color;
    ctx.beginPath();
    for (const p of l) {
      const px = fr.x(p.x), py = fr.y(p.y);
      ctx.moveTo(px + r, py);
      ctx.arc(px, py, r, 0, Math.PI * 2);
    }
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  hover(cv, (mx, my) => {
    let best: Pt | null = null, bd = 100;
    for (const p of pts) {
      const dx = fr.x(p.x) - mx, dy = fr.y(p.y) - my;
      const d = dx * dx + dy * dy;
      if (d < bd) {
        bd = d;
        best = p;
      }
    }
    return best ? { text: tip(best.key), key: best.key } : null;
  }, onClick);
}

let tipEl: HTMLDivElement | null = null;
function tooltip(): HTMLDivElement {
  if (!tipEl) {
    tipEl = document.createElement("div");
    tipEl.className = "tooltip";
    tipEl.setAttribute("role", "tooltip");
    document.body.append(tipEl);
  }
  return tipEl;
}

export function hover(cv: HTMLCanvasElement, find: (x: number, y: number) => { text: string; key: string } | null, onClick?: (key: string) => void): void {
  let current: string | null = null;
  cv.addEventListener("mousemove", (e) => {
    const r = cv.getBoundingClientRect();
    const hit = find(e.clientX - r.left, e.clientY - r.top);
    const t = tooltip();
    current = hit?.key ?? null;
    cv.style.cursor = hit && onClick ? "pointer" : "default";
    if (!hit) {
      t.style.display = "none";
      return;
    }
    t.textContent = hit.text;
    t.style.display = "block";
    t.style.left = `${Math.min(window.innerWidth - 260, e.clientX + 12)}px`;
    t.style.top = `${e.clientY + 12}px`;
  });
  cv.addEventListener("mouseleave", () => {
    tooltip().style.display = "none";
  });
  if (onClick)
    cv.addEventListener("click", () => {
      if (current) {
        tooltip().style.display = "none";
        onClick(current);
      }
    });
}

export function polyline(ctx: CanvasRenderingContext2D, fr: Frame, pts: [number, number][], color: string, width = 1.5, dash: number[] = []): void {
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.setLineDash(dash);
  ctx.beginPath();
  let started = false;
  for (const [x, y] of pts) {
    if (!isFinite(x) || !isFinite(y)) {
      started = false;
      continue;
    }
    if (started) ctx.lineTo(fr.x(x), fr.y(y));
    else ctx.moveTo(fr.x(x), fr.y(y));
    started = true;
  }
  ctx.stroke();
  ctx.setLineDash([]);
}
