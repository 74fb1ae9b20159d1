// What the browser scripts share: Chromium's flags, Leaflet's pixel arithmetic, and Run All Cells in JupyterLab.
const fs = require("fs");

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

// The JSON configuration a script is given (its first argument)
const config = () => JSON.parse(fs.readFileSync(process.argv[2], "utf8"));

// Web Mercator world pixel of a lon/lat at a zoom (Leaflet's 256 px tiles)
function worldPx(lon, lat, zoom) {
  const size = 256 * 2 ** zoom, phi = (lat * Math.PI) / 180;
  return [((lon + 180) / 360) * size, (1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2 * size];
}

// Run All Cells of the open notebook; resolves when every code cell has an execution count, and throws with
// the traceback when a cell fails. Returns the seconds from the menu click to the last cell done.
async function runAll(page, timeout) {
  await page.waitForSelector(".jp-NotebookPanel .jp-Cell", { timeout: 120000 });
  await page.waitForSelector(".jp-Notebook-ExecutionIndicator[data-status='idle']", { timeout: 120000 });
  await page.waitForTimeout(8000); // a Run All right after Idle can raise the kernel dialog
  const t0 = Date.now();
  await page.click(".lm-MenuBar-itemLabel:text-is('Run')");
  await page.click(".lm-Menu-itemLabel:text-is('Run All Cells')");
  const dialog = await page.waitForSelector(".jp-Dialog button.jp-mod-accept", { timeout: 3000 }).catch(() => null);
  if (dialog) await dialog.click();
  const ran = await page.waitForFunction(() => {
    const failed = document.querySelector(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']");
    if (failed && /Traceback|^\w*Error:/m.test(failed.textContent)) return failed.textContent.slice(-2000);
    const prompts = [...document.querySelectorAll(".jp-CodeCell .jp-InputArea-prompt")];
    return prompts.length && prompts.every((p) => /\[\d+\]/.test(p.textContent)) ? "ok" : false;
  }, null, { timeout, polling: 100 });
  const outcome = await ran.jsonValue();
  if (outcome !== "ok") throw new Error(`a cell failed:\n${outcome}`);
  return (Date.now() - t0) / 1000;
}

// Open Chromium on a 1400 x 1100 page, run `body(page)`, print what it returns as JSON with `offHost`: every
// request the page made to a host other than 127.0.0.1 (each refused, so nothing leaves the machine), and
// `console`: the warnings and errors the page logged. On a failure keep a screenshot beside cfg.screenshot
// (`_failed.png`) and exit 1.
function withPage(cfg, body) {
  const { chromium } = require(cfg.playwright);
  (async () => {
    const browser = await chromium.launch({ executablePath: cfg.chromium, args: FLAGS });
    const context = await browser.newContext({ viewport: { width: 1400, height: 1100 } });
    const offHost = [], logged = [];
    await context.route(() => true, (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === "127.0.0.1") return route.continue();
      offHost.push(url.href);
      return route.abort("blockedbyclient");
    });
    const page = await context.newPage();
    page.on("console", (m) => { if (["warning", "error"].includes(m.type())) logged.push(`${m.type()}: ${m.text()}`); });
    try {
      console.log(JSON.stringify({ ...(await body(page)), offHost, console: logged }));
    } catch (e) {
      await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "_failed.png") }).catch(() => null);
      throw e;
    } finally {
      await browser.close();
    }
  })().catch((e) => { console.error(e); process.exit(1); });
}

module.exports = { config, worldPx, runAll, withPage };
