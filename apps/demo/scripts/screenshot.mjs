#!/usr/bin/env node
// The README's screenshot of the page: serves apps/demo/dist (build it first), opens it in headless Chromium
// (WebGPU on SwiftShader where there is no GPU), waits for a warm reconstruction and writes a PNG.
//   node apps/demo/scripts/screenshot.mjs [--out apps/demo/screenshot.png] [--width 1000] [--full]
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const demoDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const { chromium } = createRequire(join(demoDir, 'package.json'))('playwright-core');
const option = (name, fallback) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : fallback);
const out = option('--out', join(demoDir, 'screenshot.png'));
const width = Number(option('--width', '1000'));
const types = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.jpg': 'image/jpeg',
  '.png': 'image/png',
};

const server = createServer((request, response) => {
  const path = (request.url ?? '/').split('?')[0];
  const file = join(demoDir, 'dist', path === '/' ? 'index.html' : path);
  try {
    const body = readFileSync(file);
    response.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' }).end(body);
  } catch {
    response.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--use-webgpu-adapter=swiftshader', '--no-first-run'],
});
try {
  const page = await browser.newPage({ viewport: { width, height: 900 }, deviceScaleFactor: 1 });
  await page.goto(`http://127.0.0.1:${server.address().port}/${option('--query', '')}`);
  const count = () => page.evaluate(() => Number(document.body.dataset.reconstructions ?? 0));
  await page.waitForFunction(() => Number(document.body.dataset.reconstructions ?? 0) >= 1, undefined, { timeout: 300000 });
  // A second reconstruction, so the status line shows a warm inference time (the first compiles shaders).
  const before = await count();
  await page.click('#new-mask');
  await page.waitForFunction((n) => Number(document.body.dataset.reconstructions ?? 0) > n, before, { timeout: 300000 });
  if (process.argv.includes('--full')) {
    await page.screenshot({ path: out, fullPage: true });
  } else {
    const bottom = await page.evaluate(
      () => document.getElementById('views-heading').closest('section').getBoundingClientRect().bottom + window.scrollY,
    );
    await page.screenshot({ path: out, clip: { x: 0, y: 0, width, height: Math.ceil(bottom + 8) }, fullPage: true });
  }
  console.log(`wrote ${out}: ${await page.textContent('#status')}`);
} finally {
  await browser.close();
  server.close();
}
