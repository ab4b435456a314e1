// Drives redrive's live page in Chromium (playwright-core): waits for replays, presses Pause and checks
// the destination stops growing, Resume and checks it grows again, then Stop; prints what it saw as JSON.
//
//   NODE_PATH=/var/tmp/redrive-tools/browser/node_modules node drive.js URL STAGING_FILE SCREENSHOT.png
"use strict";
const fs = require("fs");
const { chromium } = require("playwright-core");

const [url, staging, shot] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const lines = () => {
  try {
    return fs.readFileSync(staging, "utf8").split("\n").filter(Boolean).length;
  } catch {
    return 0;
  }
};
// Predicates are functions, not strings: the page's Content-Security-Policy forbids eval, as it should.
const inState = (page, s, timeout) =>
  page.waitForFunction((wanted) => document.body.dataset.state === wanted, s, { timeout });

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
  const page = await browser.newPage({ viewport: { width: 1100, height: 1100 } });
  const out = {};
  await page.goto(url);
  await page.waitForFunction(() => Number(document.getElementById("replayed").textContent) >= 5, null, {
    timeout: 60000,
  });
  await page.click("#pause");
  await inState(page, "paused", 10000);
  await sleep(800); // a batch already on its way finishes
  const before = lines();
  await sleep(2500);
  out.paused = [before, lines()];
  out.paused_metric = await page.textContent("#state");
  await page.screenshot({ path: shot });
  await page.click("#resume");
  await inState(page, "running", 10000);
  const t0 = Date.now();
  while (lines() <= out.paused[1] && Date.now() - t0 < 20000) await sleep(100);
  out.resumed = lines();
  out.recent_rows = await page.locator("#recent tbody tr").count();
  out.module_rows = await page.locator("#modules tbody tr").count();
  await page.click("#stop");
  await inState(page, "ended", 60000);
  out.final = {
    replayed: Number(await page.textContent("#replayed")),
    skipped: Number(await page.textContent("#skipped")),
    discarded: Number(await page.textContent("#discarded")),
  };
  out.buttons_disabled = await page.evaluate(() =>
    ["pause", "resume", "stop"].every((id) => document.getElementById(id).disabled),
  );
  console.log(JSON.stringify(out));
  await browser.close();
})().catch((e) => {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
