// Open pages of the built documentation site in headless Chromium and report their first heading.
// Usage: node site.cjs CONFIG.json   (playwright, chromium, screenshot, urls: [...])
const { config, withPage } = require("./jupyterlab.cjs");
const cfg = config();

withPage(cfg, async (page) => {
  const pages = [];
  for (const url of cfg.urls) {
    const response = await page.goto(url);
    await page.waitForLoadState("load");
    pages.push({
      url,
      status: response ? response.status() : null,
      h1: await page.evaluate(() => (document.querySelector("article h1, h1") || {}).textContent || null),
      title: await page.title(),
    });
  }
  await page.screenshot({ path: cfg.screenshot });
  return { pages };
});
