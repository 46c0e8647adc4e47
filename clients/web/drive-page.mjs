// Drive the demo page in a real Chromium with a fake microphone fed from a WAV file; print the
// page's result and numbers as JSON. Used by tests/web/test_browser.py and benchmarks/browser_client.py.
//
//   node drive-page.mjs --url URL --wav FILE.wav --listen-seconds S [--chromium PATH]
//
// The browser is the system's Chromium (no browser download), headless, with a new empty profile;
// its fake capture device plays the WAV once, and the page is driven by its Start and Stop.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, a, i, all) =>
  (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []));
const listenMs = 1000 * Number(args["listen-seconds"]);
const profile = mkdtempSync(join(tmpdir(), "stateport-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: args.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${args.wav}%noloop`,
    "--autoplay-policy=no-user-gesture-required"],
});
const log = [];
try {
  const page = context.pages()[0] || await context.newPage();
  page.on("console", (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
  await page.goto(args.url);
  await page.waitForFunction(() => window.stateportDemo && ["ready", "error"].includes(window.stateportDemo.stats().state),
    null, { timeout: 120000 });
  await page.evaluate(() => window.stateportDemo.start());
  await page.waitForTimeout(listenMs);
  await page.evaluate(() => window.stateportDemo.stop());
  const stats = await page.evaluate(() => window.stateportDemo.stats());
  console.log(JSON.stringify({ ...stats, userAgent: await page.evaluate(() => navigator.userAgent), log }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
