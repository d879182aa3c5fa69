import { setupFastestBackend } from '@sparkmim/runtime';

const status = document.getElementById('status')!;

async function start(): Promise<void> {
  const info = await setupFastestBackend(['webgpu', 'cpu']);
  const adapter = info.adapter ? ` (${info.adapter.vendor} ${info.adapter.architecture})` : '';
  status.textContent = `backend: ${info.tfjsBackend}${adapter}`;
  document.body.dataset.backend = info.tfjsBackend;
}

start().catch((error: Error) => {
  status.textContent = `error: ${error.message}`;
});
