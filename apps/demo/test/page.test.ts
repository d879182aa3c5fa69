import { execFileSync } from 'child_process';
import { createServer, type Server } from 'http';
import { readFileSync } from 'fs';
import { join, extname } from 'path';
import type { AddressInfo } from 'net';
import { chromium, type Browser } from 'playwright-core';

// The demo page in headless Chromium: the browser's own WebGPU (SwiftShader where there is no GPU).
const appDir = join(__dirname, '..');
const distDir = join(appDir, 'dist');
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const contentTypes: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.map': 'application/json' };

describe('demo page', () => {
  let server: Server;
  let browser: Browser;
  let origin: string;

  beforeAll(async () => {
    execFileSync(process.execPath, [join(appDir, 'build.mjs')], { cwd: appDir, stdio: 'pipe' });
    server = createServer((request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      const file = join(distDir, path === '/' ? 'index.html' : path);
      try {
        const body = readFileSync(file);
        response.writeHead(200, { 'content-type': contentTypes[extname(file)] ?? 'application/octet-stream' });
        response.end(body);
      } catch {
        response.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        '--no-sandbox',
        '--enable-unsafe-webgpu',
        '--enable-unsafe-swiftshader',
        '--use-webgpu-adapter=swiftshader',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  });

  it('runs on WebGPU in the browser', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(origin);
    await page.waitForFunction(() => document.body.dataset.backend !== undefined || document.getElementById('status')?.textContent?.startsWith('error'), undefined, { timeout: 60000 });
    const status = await page.textContent('#status');
    expect(errors).toEqual([]);
    expect(status).toMatch(/^backend: webgpu/);
    // The masked picture hides exactly 60% of the 7x7 patches: count the patches drawn in mask gray.
    const hiddenPatches = await page.evaluate(() => {
      const canvases = document.querySelectorAll('canvas');
      const context = canvases[1].getContext('2d')!;
      let hidden = 0;
      for (let row = 0; row < 7; row++) {
        for (let column = 0; column < 7; column++) {
          const [r, g, b] = context.getImageData(column * 32 + 16, row * 32 + 16, 1, 1).data;
          if (r === 128 && g === 128 && b === 128) hidden++;
        }
      }
      return hidden;
    });
    expect(hiddenPatches).toBe(49 - 20); // keep = round(49 * 0.4) = round(19.6) = 20
    if (process.env.SPARKMIM_SCREENSHOT) await page.screenshot({ path: process.env.SPARKMIM_SCREENSHOT });
  });
});
