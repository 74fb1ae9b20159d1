// Drive the live explore map in JupyterLab with headless Chromium (Debian's, through playwright-core).
// Usage: node lab_map.cjs CONFIG.json   (url, playwright, chromium, screenshot, click: {lon, lat}, center, zoom)
// Opens the notebook, runs all cells, waits for the map's WMS imagery, clicks the map at `click`, and
// prints JSON: the status line and gallery before and after the click, loaded tiles, widget errors.
const { config, worldPx, runAll, withPage } = require("./jupyterlab.cjs");
const cfg = config();

async function mapState(page) {
  return page.evaluate(() => {
    const texts = [...document.querySelectorAll(".jp-OutputArea .widget-html-content")].map((e) => e.textContent);
    return {
      status: texts.find((t) => /nearest of|no chip/.test(t)) || null,
      loop: texts.find((t) => /^\d+ positives, \d+ negatives/.test(t)) || null,
      gallery: [...document.querySelectorAll(".wcembed-gallery img[alt]")].map((i) => i.alt),
      tiles: [...document.querySelectorAll(".leaflet-container img.leaflet-tile")]
        .filter((i) => i.src.includes("mapserv") && i.complete && i.naturalWidth > 0).length,
      widgetErrors: (document.body.innerText.match(/Error displaying widget|model not found/g) || []).length,
      running: [...document.querySelectorAll(".jp-InputArea-prompt")].filter((p) => p.textContent.includes("*")).length,
    };
  });
}

// Whether every control of the map is drawn whole: each inside the output area and not squeezed, the
// sliders' tracks their width, no image of the map broken (a src that did not load).
const controlsDrawn = (page) => page.evaluate(() => {
  const box = document.querySelector(".wcembed-controls");
  const right = box.closest(".jp-OutputArea-output").getBoundingClientRect().right + 1;
  const parts = [...box.querySelectorAll(".widget-dropdown, .widget-text, .widget-checkbox, .widget-slider, .widget-toggle-button")];
  const bad = parts.filter((e) => { const r = e.getBoundingClientRect(); return r.width < 40 || r.right > right; })
    .map((e) => `${e.className.split(" ").find((c) => c.startsWith("widget-"))} ${e.textContent.trim().slice(0, 20)} ${Math.round(e.getBoundingClientRect().width)} px`);
  return {
    width: window.innerWidth,
    controls: parts.length,
    bad,
    tracks: [...box.querySelectorAll(".noUi-target, .slider-container")].map((t) => Math.round(t.getBoundingClientRect().width)),
    broken: [...document.querySelectorAll(".jp-OutputArea img")]
      .filter((i) => i.getAttribute("src") && i.complete && i.naturalWidth === 0).map((i) => i.src.slice(0, 80)),
  };
});

// Imagery fetched when seen: one zoom step in (and back), the WMS tile requests it made, counted by layer,
// against the WMS tiles of each layer the map then shows in its view.
async function zoomIn(page) {
  const asked = {};
  const onRequest = (r) => {
    const u = new URL(r.url());
    const q = Object.fromEntries([...u.searchParams].map(([k, v]) => [k.toLowerCase(), v]));
    if (u.pathname.includes("mapserv") && (q.request || "").toLowerCase() === "getmap" && q.width === "256") {
      asked[q.layers] = (asked[q.layers] || 0) + 1;
    }
  };
  page.on("request", onRequest);
  await page.locator(".leaflet-control-zoom-in").first().click();
  await page.waitForTimeout(3000); // the new level's tiles load, the old level's are pruned
  page.off("request", onRequest);
  const seen = await page.evaluate(() => {
    const map = document.querySelector(".leaflet-container"), m = map.getBoundingClientRect();
    const seen = {};
    for (const i of map.querySelectorAll("img.leaflet-tile")) {
      const r = i.getBoundingClientRect();
      // the new level's tiles are drawn 256 px wide; the old level's, scaled while they fade out, are not
      if (!i.src.includes("mapserv") || Math.abs(r.width - 256) > 1 || r.right <= m.left || r.left >= m.right || r.bottom <= m.top || r.top >= m.bottom) continue;
      const layers = [...new URL(i.src).searchParams].find(([k]) => k.toLowerCase() === "layers")[1];
      seen[layers] = (seen[layers] || 0) + 1;
    }
    return seen;
  });
  await page.locator(".leaflet-control-zoom-out").first().click();
  await page.waitForTimeout(1500);
  return { asked, seen };
}

withPage(cfg, async (page) => {
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(cfg.url);
  await runAll(page, 300000);
  const map = page.locator(".leaflet-container").first();
  await map.scrollIntoViewIfNeeded();
  await page.waitForFunction(() => [...document.querySelectorAll(".leaflet-container img.leaflet-tile")]
    .some((i) => i.src.includes("mapserv") && i.complete && i.naturalWidth > 0), null, { timeout: 60000 });
  const before = await mapState(page);
  const zoomStep = await zoomIn(page);
  const box = await map.boundingBox();
  const [cx, cy] = worldPx(cfg.center[1], cfg.center[0], cfg.zoom);
  const [tx, ty] = worldPx(cfg.click.lon, cfg.click.lat, cfg.zoom);
  await page.mouse.click(box.x + box.width / 2 + (tx - cx), box.y + box.height / 2 + (ty - cy));
  await page.waitForFunction((old) => {
    const t = [...document.querySelectorAll(".jp-OutputArea .widget-html-content")].map((e) => e.textContent);
    const now = t.find((s) => /nearest of|no chip/.test(s));
    return now && now !== old;
  }, before.status, { timeout: 60000 }).catch(() => null);
  await page.waitForTimeout(1500); // the gallery's thumbnails load
  const after = await mapState(page);
  await page.screenshot({ path: cfg.screenshot });
  let labelled = null;
  if (after.loop) { // the labelling panel: one click labels the first suggested chip positive
    const button = page.locator(".wcembed-label-next button[title='positive']").first();
    await button.scrollIntoViewIfNeeded();
    await button.click();
    await page.waitForFunction((old) => [...document.querySelectorAll(".jp-OutputArea .widget-html-content")]
      .some((e) => /^\d+ positives, \d+ negatives/.test(e.textContent) && e.textContent !== old),
      after.loop, { timeout: 30000 }).catch(() => null);
    labelled = await mapState(page);
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "_labels.png") });
  }
  let features = null;
  if (cfg.features) { // the three questions: explain a result, spread results out, changed like this
    features = {};
    const texts = () => page.evaluate(() =>
      [...document.querySelectorAll(".jp-OutputArea .widget-html-content")].map((e) => e.textContent));
    const explain = page.locator(".wcembed-gallery button:has-text('explain')").first();
    await explain.scrollIntoViewIfNeeded();
    await explain.click();
    const heat = await page.waitForSelector("img[alt^='where ']", { timeout: 120000 });
    features.explained = await heat.evaluate((i) => ({ alt: i.alt, width: i.naturalWidth }));
    await heat.scrollIntoViewIfNeeded();
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "_explain.png") });
    const clickAt = async (lon, lat) => {
      await map.scrollIntoViewIfNeeded();
      const b = await map.boundingBox();
      const [x, y] = worldPx(lon, lat, cfg.zoom);
      await page.mouse.click(b.x + b.width / 2 + (x - cx), b.y + b.height / 2 + (y - cy));
    };
    await page.locator(".widget-checkbox:has-text('spread out') input").first().check();
    const old = (await mapState(page)).status;
    await clickAt(cfg.center[1], cfg.center[0]);
    await page.waitForFunction((o) => [...document.querySelectorAll(".jp-OutputArea .widget-html-content")]
      .some((e) => /nearest of/.test(e.textContent) && e.textContent !== o), old, { timeout: 60000 });
    await page.waitForTimeout(1500);
    features.spread = await mapState(page);
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "_spread.png") });
    await page.locator("button.widget-toggle-button:text-is('changed like')").first().click();
    await clickAt(cfg.click.lon, cfg.click.lat);
    await page.waitForFunction(() => [...document.querySelectorAll(".jp-OutputArea .widget-html-content")]
      .some((e) => /changed most like/.test(e.textContent)), null, { timeout: 120000 });
    await page.waitForTimeout(1500);
    features.changed = {
      status: (await texts()).find((t) => /changed most like/.test(t)),
      cards: await page.evaluate(() => [...document.querySelectorAll(".wcembed-gallery .widget-html-content")]
        .map((c) => [...c.querySelectorAll("img")].map((i) => i.alt))),
      legend: (await texts()).find((t) => /^changed like/.test(t)) || null,
      widgetErrors: (await mapState(page)).widgetErrors,
    };
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "_changed.png") });
    // the clicked chip's two years, side by side: dragging one map moves the other
    const pair = page.locator(".wcembed-compare .leaflet-container");
    features.compare = { maps: await pair.count() };
    if (features.compare.maps === 2) {
      await pair.first().scrollIntoViewIfNeeded();
      const panes = () => page.evaluate(() => [...document.querySelectorAll(".wcembed-compare .leaflet-map-pane")]
        .map((p) => p.style.transform));
      const start = await panes();
      const b = await pair.first().boundingBox();
      await page.mouse.move(b.x + b.width / 2, b.y + b.height / 2);
      await page.mouse.down();
      await page.mouse.move(b.x + b.width / 2 + 90, b.y + b.height / 2 + 40, { steps: 8 });
      await page.mouse.up();
      await page.waitForTimeout(1500);
      features.compare.panes = [start, await panes()];
      await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "_compare.png") });
    }
    // the year switch: the search, the region layer's legend, the imagery and the thumbnails follow the year
    await page.locator("button.widget-toggle-button:text-is('search')").first().click();
    await clickAt(cfg.click.lon, cfg.click.lat); // a plain search, then its similarity layer
    await page.waitForFunction(() => [...document.querySelectorAll(".jp-OutputArea .widget-html-content")]
      .some((e) => /nearest of 2020-/.test(e.textContent)), null, { timeout: 60000 });
    await page.locator(".widget-dropdown:has(label:text-is('region')) select").first().selectOption("similarity");
    await page.waitForFunction(() => [...document.querySelectorAll(".jp-OutputArea .widget-html-content")]
      .some((e) => /^similarity 2020/.test(e.textContent)), null, { timeout: 60000 });
    await page.locator(".widget-dropdown:has(label:text-is('year')) select").first().selectOption("2021");
    await page.waitForFunction(() => {
      const t = [...document.querySelectorAll(".jp-OutputArea .widget-html-content")].map((e) => e.textContent);
      return t.some((s) => /nearest of 2021-/.test(s)) && t.some((s) => /^similarity 2021/.test(s));
    }, null, { timeout: 120000 });
    await map.scrollIntoViewIfNeeded();
    await page.waitForTimeout(3000); // the 2021 imagery's tiles load
    features.year = await page.evaluate(() => {
      const texts = [...document.querySelectorAll(".jp-OutputArea .widget-html-content")].map((e) => e.textContent);
      const tiles = [...document.querySelectorAll(".leaflet-container img.leaflet-tile")]
        .filter((i) => i.src.includes("mapserv") && i.complete && i.naturalWidth > 0)
        .map((i) => new URL(i.src).searchParams.get("layers") || new URL(i.src).searchParams.get("LAYERS"));
      return {
        status: texts.find((t) => /nearest of/.test(t)),
        legend: texts.find((t) => /^similarity /.test(t)),
        tiles,
        thumbnails: [...document.querySelectorAll(".wcembed-gallery img")].map((i) => i.src),
      };
    });
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "_year.png") });
    // the controls drawn whole at the page's width and at 1000 px, no broken image, no jump of the map when
    // the region's count line comes and goes
    features.drawn = [await controlsDrawn(page)];
    const mapTop = () => page.evaluate(() => {
      const c = document.querySelector(".wcembed-controls"), m = document.querySelector(".leaflet-container");
      return m.getBoundingClientRect().top - c.getBoundingClientRect().top;
    });
    const region = page.locator(".widget-dropdown:has(label:text-is('region')) select").first();
    const tops = [await mapTop()];
    for (const name of ["none", "similarity", "none"]) {
      await region.selectOption(name);
      await page.waitForTimeout(800);
      tops.push(await mapTop());
    }
    features.mapTops = tops;
    // each region layer keeps its own threshold: the similarity layer's slider dragged, another layer shown (its
    // line at its own start), then the similarity layer again (its line as it was left)
    const regionLine = () => page.evaluate(() => [...document.querySelectorAll(".jp-OutputArea .widget-html-content")]
      .map((e) => e.textContent).find((t) => /^\d+ chips with /.test(t)) || "");
    await region.selectOption("similarity");
    await page.waitForFunction(() => [...document.querySelectorAll(".jp-OutputArea .widget-html-content")]
      .some((e) => /^\d+ chips with similarity/.test(e.textContent)), null, { timeout: 60000 });
    const start = await regionLine();
    const handle = page.locator(".wcembed-controls .widget-slider .noUi-handle").first();
    await handle.scrollIntoViewIfNeeded();
    const hb = await handle.boundingBox();
    await page.mouse.move(hb.x + hb.width / 2, hb.y + hb.height / 2);
    await page.mouse.down();
    await page.mouse.move(hb.x + hb.width / 2 + 60, hb.y + hb.height / 2, { steps: 8 });
    await page.mouse.up();
    await page.waitForFunction((old) => {
      const t = [...document.querySelectorAll(".jp-OutputArea .widget-html-content")].map((e) => e.textContent)
        .find((s) => /^\d+ chips with similarity/.test(s));
      return t && t !== old;
    }, start, { timeout: 30000 });
    let moved = await regionLine(); // the drag's last value may still be on its way: read once it settles
    for (let last = ""; moved !== last; ) {
      last = moved;
      await page.waitForTimeout(1000);
      moved = await regionLine();
    }
    await region.selectOption("change");
    await page.waitForFunction(() => [...document.querySelectorAll(".jp-OutputArea .widget-html-content")]
      .some((e) => /^\d+ chips with change/.test(e.textContent)), null, { timeout: 60000 });
    await page.waitForTimeout(1000); // a late value from the similarity slider would arrive now
    const other = await regionLine();
    await region.selectOption("similarity");
    await page.waitForFunction(() => [...document.querySelectorAll(".jp-OutputArea .widget-html-content")]
      .some((e) => /^\d+ chips with similarity/.test(e.textContent)), null, { timeout: 60000 });
    await page.waitForTimeout(1000);
    features.thresholds = { start, moved, other, back: await regionLine() };
    await page.setViewportSize({ width: 1000, height: 1100 });
    await page.waitForTimeout(1500);
    features.drawn.push(await controlsDrawn(page));
    await page.locator(".wcembed-controls").first().screenshot({ path: cfg.screenshot.replace(/\.png$/, "_controls_1000.png") });
  }
  let executed = null;
  if (cfg.executedUrl) { // an executed notebook opened without running it: untrusted, widgets not drawn
    await page.goto(cfg.executedUrl);
    await page.waitForSelector(".jp-OutputArea-output", { timeout: 90000 });
    await page.waitForTimeout(3000);
    executed = await page.evaluate(() => {
      const outputs = [...document.querySelectorAll(".jp-OutputArea-output")];
      return {
        pictures: outputs.flatMap((o) => [...o.querySelectorAll("img")]).filter((i) => i.naturalWidth > 0).length,
        vboxText: outputs.filter((o) => /VBox\(/.test(o.textContent)).length,
        widgetErrors: (document.body.innerText.match(/Error displaying widget|model not found/g) || []).length,
      };
    });
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "_executed.png") });
  }
  return { before, zoomStep, after, labelled, features, executed, pageErrors };
});
