// Shared helpers of the browser tests: start katib, launch Debian's Chromium.
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, "../../..");

export function katibBin() {
  if (process.env.KATIB_BIN) return process.env.KATIB_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? path.join(repo, "target");
  return path.join(target, "debug", "katib");
}

/** Starts `katib <args>` and resolves with the web UI's URL once it prints it. */
export function startKatib(args, { cwd = repo, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(katibBin(), args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    const timer = setTimeout(() => reject(new Error(`katib did not print its UI address in 60 s:\n${err}`)), 60000);
    child.stderr.on("data", (d) => {
      err += d;
      const m = err.match(/web UI: (http:\/\/[^\s]+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1].replace(/\/$/, ""), log: () => err });
      }
    });
    child.stdout.on("data", () => {});
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${katibBin()}: ${e.message} (build it with cargo build, or set KATIB_BIN)`));
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`katib exited with ${code} before serving the UI:\n${err}`));
    });
  });
}

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

// Playwright gives every launch a fresh temporary profile (it refuses --user-data-dir in
// args; launchPersistentContext would be the way to pass one).
export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export function tempDir(prefix) {
  return mkdtempSync(path.join(tmpdir(), prefix));
}
