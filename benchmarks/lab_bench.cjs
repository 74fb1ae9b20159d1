// The live explore map at scale, timed in a real browser (Debian's Chromium through playwright-core).
// Usage: node lab_bench.cjs CONFIG.json   (url, playwright, chromium, screenshot, center, zoom, clicks: [[lon, lat]])
// Opens the notebook, runs all cells (timed), saves it (cell timings), then clicks the map at each point twice
// over: with the similarity layer shown, then with the region set to "none". For each click: click -> status
// line changed, click -> region layer image changed, and the bytes the kernel sent. Then labelling rounds:
// two labels on the map and "retrain", timed to the panel's result. Pictures: the whole page after each part,
// the map's controls, and the labelling panel before, during and after the last round's retrain.
const { config, worldPx, runAll, withPage } = require("../tests/browser/jupyterlab.cjs");
const cfg = config();

const state = (page) => page.evaluate(() => ({
  status: [...document.querySelectorAll(".jp-OutputArea .widget-html-content")].map((e) => e.textContent)
    .find((t) => /nearest of|no chip/.test(t)) || null,
  region: [...document.querySelectorAll(".jp-OutputArea .widget-html-content")].map((e) => e.textContent)
    .find((t) => /^\d+ chips with /.test(t)) || null,
  layer: (document.querySelector(".leaflet-container img.leaflet-image-layer") || {}).src || "",
}));

withPage(cfg, async (page) => {
  let received = 0; // bytes of websocket frames from the kernel (comm messages carry the widgets' state)
  page.on("websocket", (ws) => ws.on("framereceived", (f) => {
  received += typeof f.payload === "string" ? Buffer.byteLength(f.payload) : f.payload.length;
  }));
  await page.goto(cfg.url);
  const runAllSeconds = await runAll(page, 600000);
  await page.keyboard.press("Control+s"); // the cells' execution timings go into the saved notebook
  await page.waitForTimeout(2000);
  const map = page.locator(".leaflet-container").first();
  await map.scrollIntoViewIfNeeded();
  await page.waitForTimeout(2000);
  const [cx, cy] = worldPx(cfg.center[1], cfg.center[0], cfg.zoom);
  const clicks = [];
  for (const region of ["similarity", "none"]) { // (Run All with labels leaves the scores layer shown)
    await page.locator(".widget-dropdown:has(label:text-is('region')) select").first().selectOption(region);
    await page.waitForTimeout(2000);
    await map.scrollIntoViewIfNeeded();
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
      console.log(JSON.stringify({ click: clicks[clicks.length - 1] })); // each figure as it is measured
    }
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, `_${region}.png`) });
    if (region === "similarity") { // the controls with a layer shown: its threshold and opacity too
      await page.locator(".wcembed-controls").first().screenshot({ path: cfg.screenshot.replace(/\.png$/, "_controls.png") });
    }
  }
  // labelling rounds: label two chips on the map (one positive, one negative), then press "retrain";
  // timed from the press to the panel's "trained on N"
  const rounds = [];
  const panel = page.locator(".wcembed-panel").first();
  const panelShot = (when) => panel.screenshot({ path: cfg.screenshot.replace(/\.png$/, `_panel_${when}.png`) });
  const loopText = () => page.evaluate(() => (document.querySelector(".wcembed-label-status") || {}).textContent || "");
  for (let r = 0; r < (cfg.rounds || []).length; r++) {
    for (const [mode, [lon, lat]] of [["positive", cfg.rounds[r][0]], ["negative", cfg.rounds[r][1]]]) {
      await page.locator(`button.widget-toggle-button:text-is('${mode}')`).first().click();
      await map.scrollIntoViewIfNeeded();
      const before = await loopText(), box = await map.boundingBox();
      const [x, y] = worldPx(lon, lat, cfg.zoom);
      await page.mouse.click(box.x + box.width / 2 + (x - cx), box.y + box.height / 2 + (y - cy));
      await page.waitForFunction((old) => ((document.querySelector(".wcembed-label-status") || {}).textContent
        || "") !== old, before, { timeout: 60000, polling: 20 }); // the one panel's status line, as loopText reads it
    }
    const button = page.locator("button:has-text('retrain')").first();
    await button.scrollIntoViewIfNeeded();
    const before = await loopText();
    const n = Number((before.match(/^(\d+) positives, (\d+) negatives/) || [0, 0, 0]).slice(1, 3)
      .reduce((a, b) => Number(a) + Number(b), 0));
    const last = r === cfg.rounds.length - 1;
    if (last) await panelShot("before");
    const start = Date.now();
    await button.click();
    let during = null;
    if (last) { // while it trains: the button disabled, the status line saying what it does
      await page.waitForFunction(() => ((document.querySelector(".wcembed-label-status") || {}).textContent || "")
        .startsWith("training on"), null, { timeout: 30000, polling: 10 });
      during = { status: await loopText() };
      await panelShot("during");
      during.pictured = (await loopText()).startsWith("training on"); // still training once the picture was taken
    }
    await page.waitForFunction((want) => ((document.querySelector(".wcembed-label-status") || {}).textContent
      || "").includes(`trained on ${want}:`), n, { timeout: 120000, polling: 20 }).then(() => null);
    const seconds = (Date.now() - start) / 1000;
    rounds.push({ labels: n, retrain_s: seconds, during, panel: await loopText() });
    console.log(JSON.stringify({ round: rounds[rounds.length - 1] }));
  }
  await panelShot("after");
  await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "_labels.png") });
  return { run_all_s: runAllSeconds, clicks, rounds };
});
