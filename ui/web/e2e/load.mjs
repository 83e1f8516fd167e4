// Load test: 10,000 synthetic trials in the store, served by `katib ui`; measures API
// latency (Node fetch, sequential) and the experiment page's interactive time in headless
// Chromium. Prints medians.
//   node e2e/load.mjs [trials=10000] [points-per-trial=10]
// Needs the seeder: cargo build -p katib-ui --example seed (KATIB_SEED_BIN overrides).
import { execFileSync } from "node:child_process";
import path from "node:path";
import { launchBrowser, repo, startKatib, tempDir } from "./lib.mjs";

const n = Number(process.argv[2] ?? 10000);
const points = Number(process.argv[3] ?? 10);
const target = process.env.CARGO_TARGET_DIR ?? path.resolve("../../target");
const seedBin = process.env.KATIB_SEED_BIN ?? path.join(target, "debug", "examples", "seed");
const dir = tempDir("katib-load-");
const db = path.join(dir, "katib.db");

let t = Date.now();
console.log(execFileSync(seedBin, [db, String(n), String(points)]).toString().trim(), `(${((Date.now() - t) / 1000).toFixed(1)} s)`);

const katib = await startKatib(["ui", "--db", `sqlite://${db}`, "--state-dir", dir, "--listen", "127.0.0.1:0"]);
const base = katib.url;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const p90 = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.9))];
};
const rows = [];

try {
  // --- API latency -------------------------------------------------------------------
  const trial = "load-10k-00042";
  const endpoints = [
    ["GET /api/experiments", "/api/experiments"],
    ["GET /api/experiments/{ns}/{name} (all trials + aggregates)", "/api/experiments/kubeflow/load-10k"],
    ["GET .../intermediate (1000 curves)", "/api/experiments/kubeflow/load-10k/intermediate"],
    ["GET .../trials/{trial}", `/api/experiments/kubeflow/load-10k/trials/${trial}`],
  ];
  for (const [label, url] of endpoints) {
    const times = [];
    let bytes = 0;
    for (let i = 0; i < 21; i++) {
      const t0 = performance.now();
      const res = await fetch(base + url);
      const body = await res.arrayBuffer();
      if (!res.ok) throw new Error(`${url}: ${res.status}`);
      times.push(performance.now() - t0);
      bytes = body.byteLength;
    }
    rows.push([label, `${median(times).toFixed(1)} ms`, `${p90(times).toFixed(1)} ms`, `${(bytes / 1024).toFixed(0)} KiB`]);
  }

  // --- page interactive time ---------------------------------------------------------
  const browser = await launchBrowser();
  const interactive = [];
  const tabs = { trials: [], history: [], parallel: [], slice: [], contour: [], brush: [] };
  for (let run = 0; run < 5; run++) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    await page.goto(`${base}/#/e/kubeflow/load-10k`);
    await page.waitForFunction((n) => document.querySelector("#trial-count")?.textContent === String(n) && document.querySelector("#best-card"), n, { timeout: 30000 });
    // Interactive: rendered, and the main thread answers the next frame + task.
    const ms = await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(() => r(performance.now())))));
    interactive.push(ms);
    const time = async (key, action, selector) => {
      const t0 = Date.now();
      await action();
      await page.locator(selector).first().waitFor();
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r))));
      tabs[key].push(Date.now() - t0);
    };
    await time("trials", () => page.click("#tab-trials"), "#trials-table .vrow[data-trial]");
    await time("history", () => page.click("#tab-history"), "#history-plot canvas");
    await time("parallel", () => page.click("#tab-parallel"), "#parallel-plot canvas");
    const cv = page.locator("#parallel-plot canvas");
    const box = await cv.boundingBox();
    await time(
      "brush",
      async () => {
        await page.mouse.move(box.x + 60, box.y + 60);
        await page.mouse.down();
        await page.mouse.move(box.x + 60, box.y + 200, { steps: 4 });
        await page.mouse.up();
      },
      "#parallel-plot canvas",
    );
    await time("slice", () => page.click("#tab-slice"), ".small-multiples canvas");
    await time("contour", () => page.click("#tab-contour"), "#contour-plot canvas");
    await ctx.close();
  }
  // Screenshots of the 10,000-trial experiment for the docs.
  {
    const shots = path.join(repo, "docs", "screenshots");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(`${base}/#/e/kubeflow/load-10k?tab=parallel`);
    const cv = page.locator("#parallel-plot canvas");
    await cv.waitFor({ timeout: 30000 });
    const box = await cv.boundingBox();
    await page.mouse.move(box.x + box.width - 60, box.y + 40);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width - 60, box.y + 110, { steps: 3 });
    await page.mouse.up();
    await page.screenshot({ path: path.join(shots, "load-10k-parallel.png") });
    for (const tab of ["history", "intermediate", "trials"]) {
      await page.click(`#tab-${tab}`);
      await page.locator(tab === "trials" ? "#trials-table .vrow[data-trial]" : `#${tab}-plot canvas`).first().waitFor({ timeout: 30000 });
      await page.screenshot({ path: path.join(shots, `load-10k-${tab}.png`) });
    }
    await page.close();
  }
  await browser.close();
  rows.push(["Experiment page interactive (navigation → rendered + idle)", `${median(interactive).toFixed(0)} ms`, `${Math.max(...interactive).toFixed(0)} ms (max)`, ""]);
  for (const [k, v] of Object.entries(tabs)) rows.push([k === "brush" ? "Parallel coordinates: one brush drag (4 redraws)" : `Open the ${k} tab`, `${median(v)} ms`, `${Math.max(...v)} ms (max)`, ""]);
} finally {
  katib.child.kill("SIGINT");
}

console.log(`\n${n} trials, ${points} objective reports each\n`);
console.log("| measurement | median | p90/max | response |\n|---|---|---|---|");
for (const r of rows) console.log(`| ${r.join(" | ")} |`);
