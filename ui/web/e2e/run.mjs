// Browser end-to-end test: `katib run --ui` on an example, driven in headless Chromium.
// Saves a screenshot of every page to docs/screenshots/. Exit code 0 on success.
//   node e2e/run.mjs            (KATIB_BIN or $CARGO_TARGET_DIR/debug/katib; CHROMIUM)
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CHROMIUM, launchBrowser, repo, startKatib, tempDir } from "./lib.mjs";

const shots = path.join(repo, "docs", "screenshots");
mkdirSync(shots, { recursive: true });

if (!existsSync(CHROMIUM)) {
  const msg = `Chromium not found at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM)`;
  if (process.env.CI === "true") throw new Error(msg);
  console.log(`SKIP browser e2e: ${msg}`);
  process.exit(0);
}

// A slower copy of the random example (2 at a time, 10 trials) so trials arrive while we watch.
const state = tempDir("katib-e2e-state-");
const yamlPath = path.join(state, "e2e-live.yaml");
writeFileSync(
  yamlPath,
  readFileSync(path.join(repo, "examples", "random.yaml"), "utf8")
    .replace("name: random-example", "name: e2e-live")
    .replace("parallelTrialCount: 3", "parallelTrialCount: 2")
    .replace("maxTrialCount: 12", "maxTrialCount: 10")
    .replace('"--epochs=5"', '"--epochs=8"'),
);

const katib = await startKatib([
  "run", yamlPath, "--ui", "--ui-listen", "127.0.0.1:0", "--state-dir", state, "--work-dir", path.join(repo, "examples"), "--quiet",
]);
const base = katib.url;
const browser = await launchBrowser();
let failed = false;
const step = async (name, fn) => {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed = true;
    console.log(`FAIL ${name}: ${e.stack ?? e}`);
    throw e;
  }
};

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`) });
  const trialCount = async () => Number((await page.locator("#trial-count").textContent()) ?? "0");

  await step("experiment list shows the running experiment", async () => {
    await page.goto(`${base}/`);
    await page.locator('#experiments tr[data-name="e2e-live"]').waitFor({ timeout: 20000 });
    await shot("01-experiments");
  });

  await step("experiment page: trials appear live (no reload)", async () => {
    await page.click('#experiments a:text("e2e-live")');
    await page.locator("#trial-count").waitFor();
    const first = await trialCount();
    await page.waitForFunction((n) => Number(document.querySelector("#trial-count")?.textContent ?? 0) > n, first, { timeout: 60000 });
    assert.ok((await trialCount()) > first);
    await shot("02-overview-running");
  });

  await step("trials table updates live and highlights the best", async () => {
    await page.click("#tab-trials");
    await page.locator("#trials-table .vrow[data-trial]").first().waitFor();
    // Wait for the experiment to finish so the remaining views are complete.
    await page.waitForFunction(() => document.querySelector("h1 .badge")?.textContent === "Succeeded", null, { timeout: 120000 });
    await page.locator("#trials-table .vrow.best").first().waitFor({ timeout: 10000 });
    assert.equal(await page.locator("#trials-table .vrow[data-trial]").count(), 10);
    await shot("03-trials");
  });

  await step("trials table sorts and filters", async () => {
    await page.fill("#trial-filter", "optimizer=adam");
    await page.waitForFunction(() => /^[0-9] of 10 trials/.test(document.querySelector("#shown-count")?.textContent ?? ""));
    const shown = await page.locator("#trials-table .vrow[data-trial]").count();
    assert.ok(shown < 10, `filter left ${shown} rows`);
    await page.fill("#trial-filter", "");
    await page.waitForFunction(() => document.querySelectorAll("#trials-table .vrow[data-trial]").length === 10);
  });

  await step("keyboard: arrow keys switch tabs, / focuses the filter, sorting by a column", async () => {
    await page.focus("#tab-trials");
    await page.keyboard.press("ArrowRight");
    assert.equal(await page.getAttribute("#tab-history", "aria-selected"), "true");
    await page.keyboard.press("ArrowLeft");
    assert.equal(await page.getAttribute("#tab-trials", "aria-selected"), "true");
    await page.locator("#trials-table").waitFor();
    await page.keyboard.press("/");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "trial-filter");
    // Sort by the objective (descending first): the best trial comes first.
    await page.click('#trials-table .vhead button:text("accuracy")');
    const first = page.locator("#trials-table .vrow[data-trial]").first();
    assert.match((await first.getAttribute("class")) ?? "", /best/);
  });

  await step("optimization history", async () => {
    await page.click("#tab-history");
    await page.locator("#history-plot canvas").waitFor();
    await shot("04-history");
  });

  await step("parallel coordinates: brushing narrows the selection", async () => {
    await page.click("#tab-parallel");
    const cv = page.locator("#parallel-plot canvas");
    await cv.waitFor();
    const box = await cv.boundingBox();
    const total = Number(await cv.getAttribute("data-shown"));
    assert.equal(total, 10);
    // First axis (x = 60): drag over the upper 40 % of its range.
    await page.mouse.move(box.x + 60, box.y + 40);
    await page.mouse.down();
    await page.mouse.move(box.x + 60, box.y + 120, { steps: 5 });
    await page.mouse.move(box.x + 60, box.y + 200, { steps: 5 });
    await page.mouse.up();
    const shown = Number(await cv.getAttribute("data-shown"));
    assert.ok(shown < total, `brush kept ${shown} of ${total}`);
    await shot("05-parallel-brushed");
    // Axis toggle hides an axis.
    await page.locator('#axis-toggles input[aria-label="Show axis momentum"]').uncheck();
    await page.locator("#parallel-plot canvas").waitFor();
  });

  for (const [tab, sel, name] of [
    ["intermediate", "#intermediate-plot canvas", "06-intermediate"],
    ["slice", ".small-multiples canvas", "07-slice"],
    ["contour", "#contour-plot canvas", "08-contour"],
    ["importance", "#importance .bar-row", "09-importance"],
  ]) {
    await step(`${tab} view`, async () => {
      await page.click(`#tab-${tab}`);
      await page.locator(sel).first().waitFor({ timeout: 10000 });
      await shot(name);
    });
  }

  await step("compare selected trials", async () => {
    await page.click("#tab-trials");
    const boxes = page.locator('#trials-table .vrow[data-trial] input[type="checkbox"]');
    await boxes.nth(0).check();
    await boxes.nth(1).check();
    await boxes.nth(2).check();
    await page.click("#compare-btn");
    await page.locator("#compare-table").waitFor();
    assert.equal(await page.locator("#compare-table thead th").count(), 4);
    await shot("10-compare");
  });

  await step("trial page: parameters, metric curves, log", async () => {
    await page.click("#tab-trials");
    await page.locator("#trials-table .vrow[data-trial] a").first().click();
    await page.locator("#trial-params").waitFor();
    await page.locator(".metric-plot canvas").first().waitFor();
    await page.waitForFunction(() => /epoch/.test(document.querySelector("#trial-log")?.textContent ?? ""));
    await shot("11-trial");
  });

  await step("create: an invalid YAML shows inline errors with lines", async () => {
    await page.goto(`${base}/#/new`);
    const yaml = await page.inputValue("#yaml");
    await page.fill("#yaml", yaml.replace("maxTrialCount: 12", "maxTrialCount: -1").replace("parameterType: double", "parameterType: float"));
    await page.click("#validate");
    await page.locator(".problem").first().waitFor();
    const text = await page.locator("#problems").textContent();
    assert.match(text, /line \d+/);
    assert.match(text, /maxTrialCount/);
    assert.ok((await page.locator(".gutter .bad").count()) >= 1);
    await shot("12-create-invalid");
  });

  await step("create: a valid YAML runs and its trials appear", async () => {
    const yaml = await page.inputValue("#yaml");
    await page.fill("#yaml", yaml.replace("maxTrialCount: -1", "maxTrialCount: 4").replace("parameterType: float", "parameterType: double").replace("name: random-from-ui", "name: e2e-from-ui"));
    await page.click("#create");
    await page.waitForURL(/#\/e\/kubeflow\/e2e-from-ui/);
    await page.waitForFunction(() => Number(document.querySelector("#trial-count")?.textContent ?? 0) >= 1, null, { timeout: 60000 });
    await page.waitForFunction(() => document.querySelector("h1 .badge")?.textContent === "Succeeded", null, { timeout: 120000 });
    await shot("13-created-run");
  });

  await step("list: delete with confirmation", async () => {
    await page.goto(`${base}/`);
    await page.locator('#experiments tr[data-name="e2e-from-ui"]').waitFor();
    await page.click('#experiments tr[data-name="e2e-from-ui"] button.danger');
    await page.locator("dialog.confirm").waitFor();
    await shot("14-delete-confirm");
    await page.click("#confirm-delete");
    await page.locator('#experiments tr[data-name="e2e-from-ui"]').waitFor({ state: "detached" });
  });

  await step("narrow window and error state", async () => {
    await page.setViewportSize({ width: 420, height: 800 });
    await page.goto(`${base}/#/e/kubeflow/e2e-live`);
    await page.locator("#stats").waitFor();
    await shot("15-narrow-experiment");
    await page.goto(`${base}/#/e/kubeflow/no-such-experiment`);
    await page.locator(".error").waitFor();
    await shot("16-not-found");
  });

  assert.deepEqual(errors, [], "no uncaught errors in the page");
} catch (e) {
  failed = true;
  if (!String(e).includes("AssertionError")) console.log(String(e));
  console.log("--- katib log ---\n" + katib.log().slice(-4000));
} finally {
  await browser.close();
  katib.child.kill("SIGINT");
}
process.exit(failed ? 1 : 0);
