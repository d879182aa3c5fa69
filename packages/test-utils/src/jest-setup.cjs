// Runs inside every jest test context before the specs. WebGPU for Node ('webgpu', Dawn) is an ES module
// with a native addon that jest's module system cannot load, so it is loaded with Node's own require and
// exposed as navigator.gpu here, before any spec imports @tensorflow/tfjs-backend-webgpu.
const path = require('node:path');

const wanted = (process.env.SPARKMIM_TEST_BACKENDS || 'cpu,webgpu').split(',').map((s) => s.trim());
if (wanted.includes('webgpu') && !globalThis.navigator?.gpu) {
  // Jest's module system cannot load the ESM entry of 'webgpu', so the Dawn addon it wraps is opened
  // directly; it exports the same { create, globals } as the package.
  let webgpu;
  try {
    const runtimeDir = path.dirname(require.resolve('@sparkmim/runtime/package.json'));
    const webgpuDir = path.dirname(require.resolve('webgpu/package.json', { paths: [runtimeDir] }));
    const arch = process.platform === 'darwin' ? 'universal' : process.arch;
    const addon = { exports: {} };
    process.dlopen(addon, path.join(webgpuDir, 'dist', `${process.platform}-${arch}`, 'dawn.node'));
    webgpu = addon.exports;
  } catch (error) {
    globalThis.__sparkmimWebGpuLoadError = error;
  }
  if (webgpu) {
    for (const [key, value] of Object.entries(webgpu.globals)) {
      if (!(key in globalThis)) globalThis[key] = value;
    }
    const gpu = webgpu.create([]);
    if (globalThis.navigator) Object.defineProperty(globalThis.navigator, 'gpu', { value: gpu, configurable: true });
    else globalThis.navigator = { gpu };
  }
}

// tfjs's test mode: silences the "install tfjs-node" banner that the cpu backend prints on first use.
require('@tensorflow/tfjs-core').env().set('IS_TEST', true);
