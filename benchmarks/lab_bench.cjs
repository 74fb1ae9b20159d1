// The live explore map at scale, timed in a real browser (Debian's Chromium through playwright-core).
// Usage: node lab_bench.cjs CONFIG.json   (url, playwright, chromium, screenshot, center, zoom, clicks: [[lon, lat]])
// Opens the notebook, runs all cells (timed), saves it (cell timings), then clicks the map at each point twice
// over: with the similarity layer shown (as Run All leaves it), then with the region set to "none". For each
// click: click -> status line changed, click -> region layer image changed, and the bytes the kernel sent.
const fs = require("fs");
const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const { chromium } = require(cfg.playwright);

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

function worldPx(lon, lat, zoom) {
  const size = 256 * 2 ** zoom, phi = (lat * Math.PI) / 180;
  return [((lon + 180) / 360) * size, (1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2 * size];
}

const state = (page) => page.evaluate(() => ({
  status: [...document.querySelectorAll(".jp-OutputArea .widget-html-content")].map((e) => e.textContent)
    .find((t) => /nearest of|no chip/.test(t)) || null,
  region: [...document.querySelectorAll(".jp-OutputArea .widget-html-content")].map((e) => e.textContent)
    .find((t) => /^\d+ chips with /.test(t)) || null,
  layer: (document.querySelector(".leaflet-container img.leaflet-image-layer") || {}).src || "",
}));

(async () => {
  const browser = await chromium.launch({ executablePath: cfg.chromium, args: FLAGS });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  let received = 0; // bytes of websocket frames from the kernel (comm messages carry the widgets' state)
  page.on("websocket", (ws) => ws.on("framereceived", (f) => {
    received += typeof f.payload === "string" ? Buffer.byteLength(f.payload) : f.payload.length;
  }));
  try {
    await page.goto(cfg.url);
    await page.waitForSelector(".jp-Notebook-ExecutionIndicator[data-status='idle']", { timeout: 120000 });
    await page.waitForTimeout(8000); // a Run All right after Idle can raise the kernel dialog
    const t0 = Date.now();
    await page.click(".lm-MenuBar-itemLabel:text-is('Run')");
    await page.click(".lm-Menu-itemLabel:text-is('Run All Cells')");
    const ran = await page.waitForFunction(() => {
      const failed = document.querySelector(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']");
      if (failed && /Traceback|^\w*Error:/m.test(failed.textContent)) return failed.textContent.slice(-2000);
      const prompts = [...document.querySelectorAll(".jp-CodeCell .jp-InputArea-prompt")];
      return prompts.length && prompts.every((p) => /\[\d+\]/.test(p.textContent)) ? "ok" : false;
    }, null, { timeout: 600000, polling: 100 });
    const outcome = await ran.jsonValue();
    if (outcome !== "ok") throw new Error(`a cell failed:\n${outcome}`);
    const runAll = (Date.now() - t0) / 1000;
    await page.keyboard.press("Control+s"); // the cells' execution timings go into the saved notebook
    await page.waitForTimeout(2000);
    const map = page.locator(".leaflet-container").first();
    await map.scrollIntoViewIfNeeded();
    await page.waitForTimeout(2000);
    const [cx, cy] = worldPx(cfg.center[1], cfg.center[0], cfg.zoom);
    const clicks = [];
    for (const region of ["similarity", "none"]) {
      if (region === "none") {
        await page.locator(".widget-dropdown:has(label:text-is('region')) select").first().selectOption("none");
        await page.waitForTimeout(2000);
        await map.scrollIntoViewIfNeeded();
      }
      for (const [lon, lat] of cfg.clicks) {
        const before = await state(page), bytes0 = received;
        const box = await map.boundingBox();
        const [x, y] = worldPx(lon, lat, cfg.zoom);
        const start = Date.now();
        await page.mouse.click(box.x + box.width / 2 + (x - cx), box.y + box.height / 2 + (y - cy));
        await page.waitForFunction((old) => {
          const t = [...document.querySelectorAll(".jp-OutputArea .widget-html-content")].map((e) => e.textContent)
            .find((s) => /nearest of|no chip/.test(s));
          return t && t !== old;
        }, before.status, { timeout: 60000, polling: 10 });
        const status = (Date.now() - start) / 1000;
        let layer = null;
        if (region !== "none") {
          await page.waitForFunction((old) => {
            const img = document.querySelector(".leaflet-container img.leaflet-image-layer");
            return img && img.src !== old && img.complete;
          }, before.layer, { timeout: 60000, polling: 10 });
          layer = (Date.now() - start) / 1000;
        }
        await page.waitForTimeout(1500); // what else the click sends arrives
        const after = await state(page);
        clicks.push({ region, status_s: status, layer_s: layer, kernel_bytes: received - bytes0,
          layer_png_bytes: region === "none" ? 0 : Math.round((after.layer.length - 22) * 3 / 4),
          status_line: after.status, region_line: after.region });
      }
      await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, `_${region}.png`) });
    }
    console.log(JSON.stringify({ run_all_s: runAll, clicks }));
  } catch (e) {
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "_failed.png") }).catch(() => null);
    throw e;
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
