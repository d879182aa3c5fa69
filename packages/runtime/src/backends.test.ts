import { WEBGPU_TRAINING_KERNELS } from '@sparkmim/webgpu-kernels';
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, gradientsRegistered, isSoftwareAdapter, setupBackend, setupFastestBackend } from './index';

describe('setupBackend', () => {
  it('lists the valid names for an unknown backend', async () => {
    await expect(setupBackend('tpu')).rejects.toThrow("unknown backend 'tpu': expected one of cpu, wasm, webgpu, tensorflow, tensorflow-gpu");
  });

  it('names the package and the install command when tfjs-node-gpu is absent', async () => {
    const attempt = setupBackend('tensorflow-gpu');
    await expect(attempt).rejects.toBeInstanceOf(BackendUnavailableError);
    await expect(attempt).rejects.toThrow(
      'tensorflow-gpu: the package @tensorflow/tfjs-node-gpu is not installed. Install it with: npm install @tensorflow/tfjs-node-gpu@4.22.0',
    );
  });

  it('sets cpu up with gradients registered', async () => {
    const info = await setupBackend('cpu');
    expect(info).toMatchObject({ name: 'cpu', tfjsBackend: 'cpu', canTrain: true });
    expect(tf.getBackend()).toBe('cpu');
    expect(gradientsRegistered()).toBe(true);
    // A conv gradient end to end: d/dx sum(conv2d(x, ones)) counts how many outputs each input feeds.
    const gradient = tf.tidy(() => {
      const x = tf.ones([1, 3, 3, 1]) as tf.Tensor4D;
      const filter = tf.ones([3, 3, 1, 1]) as tf.Tensor4D;
      return tf.grad((input) => tf.sum(tf.conv2d(input as tf.Tensor4D, filter, 1, 'valid')))(x);
    });
    expect(Array.from(gradient.dataSync())).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1]);
    gradient.dispose();
  });

  it('names the bad value of a wasm thread count', async () => {
    await expect(setupBackend('wasm', { threads: 0 })).rejects.toThrow('wasm: expected a thread count from 1 to 8, got threads 0');
    const saved = process.env.SPARKMIM_WASM_THREADS;
    process.env.SPARKMIM_WASM_THREADS = 'two';
    try {
      await expect(setupBackend('wasm')).rejects.toThrow(
        'wasm: expected a thread count from 1 to 8, got SPARKMIM_WASM_THREADS=two (unset SPARKMIM_WASM_THREADS for the default)',
      );
    } finally {
      if (saved === undefined) delete process.env.SPARKMIM_WASM_THREADS;
      else process.env.SPARKMIM_WASM_THREADS = saved;
    }
  });

  it('sets wasm up on 2 threads in Node, with the training kernels registered (a conv filter gradient runs)', async () => {
    // Threads in Node need the Worker that runtime/src/wasm.ts gives tfjs's threaded build: without it the
    // backend fails to start (ERR_WORKER_PATH), or runs on one thread.
    const info = await setupBackend('wasm', { threads: 2 });
    expect(info).toMatchObject({ name: 'wasm', tfjsBackend: 'wasm', canTrain: true, threads: 2 });
    const heap = (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8;
    expect(heap.buffer).toBeInstanceOf(SharedArrayBuffer);
    // A convolution big enough for XNNPACK to split over both threads, against a loop: each output is
    // the sum of its 3x3x4 window of x[i] = i mod 7, times 1.
    const x = tf.tensor4d(
      Array.from({ length: 16 * 16 * 4 }, (_, i) => i % 7),
      [1, 16, 16, 4],
    );
    const filter = tf.ones([3, 3, 4, 8]) as tf.Tensor4D;
    const conv = tf.conv2d(x, filter, 1, 'valid');
    const values = conv.dataSync();
    const at = (row: number, column: number, channel: number) => ((row * 16 + column) * 4 + channel) % 7;
    for (const [row, column] of [
      [0, 0],
      [7, 3],
      [13, 13],
    ] as const) {
      let sum = 0;
      for (let dr = 0; dr < 3; dr++) for (let dc = 0; dc < 3; dc++) for (let ch = 0; ch < 4; ch++) sum += at(row + dr, column + dc, ch);
      expect(values[(row * 14 + column) * 8 + 5]).toBe(sum);
    }
    // sparkmim's own kernels read and write the (now shared) heap from JavaScript: a row gather copies
    // rows of 16 values with copyWithin over it.
    const rows = tf.tensor2d(
      Array.from({ length: 64 }, (_, i) => i),
      [4, 16],
    );
    const indices = tf.tensor1d([2, 0], 'int32');
    const gathered = tf.gather(rows, indices);
    expect(Array.from(gathered.dataSync())).toEqual([...Array.from({ length: 16 }, (_, i) => 32 + i), ...Array.from({ length: 16 }, (_, i) => i)]);
    tf.dispose([x, filter, conv, rows, indices, gathered]);
    expect(await setupBackend('wasm', { threads: 1 })).toMatchObject({ threads: 2 }); // the first setup chose
    // d/dfilter sum(conv2d(ones, filter)) with a 2x2 input and a 1x1 filter: the sum of the input, 4.
    const gradient = tf.tidy(() => {
      const x = tf.ones([1, 2, 2, 1]) as tf.Tensor4D;
      return tf.grad((filter) => tf.sum(tf.conv2d(x, filter as tf.Tensor4D, 1, 'valid')))(tf.ones([1, 1, 1, 1]));
    });
    expect(Array.from(gradient.dataSync())).toEqual([4]);
    gradient.dispose();
    await setupBackend('cpu');
  });

  it('sets webgpu up and reports the adapter', async () => {
    if (!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu && process.env.CI !== 'true') {
      console.warn('no WebGPU here: skipping');
      return;
    }
    const info = await setupBackend('webgpu');
    expect(info.tfjsBackend).toBe('webgpu');
    expect(typeof info.adapter?.vendor).toBe('string');
    const sum = tf.tidy(() => tf.tensor1d([1, 2, 3]).sum());
    expect(Array.from(await sum.data())).toEqual([6]);
    sum.dispose();
  });

  it("chooses webgpu's training kernels: by option, else SPARKMIM_WEBGPU_STOCK_KERNELS, else ours unless the adapter is software", async () => {
    if (!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu && process.env.CI !== 'true') {
      console.warn('no WebGPU here: skipping');
      return;
    }
    // Whose kernels are registered: ['sparkmim'] or ['stock'] when all agree.
    const registered = () => [
      ...new Set(
        WEBGPU_TRAINING_KERNELS.map((config) => (tf.getKernel(config.kernelName, 'webgpu')?.kernelFunc === config.kernelFunc ? 'sparkmim' : 'stock')),
      ),
    ];
    const saved = process.env.SPARKMIM_WEBGPU_STOCK_KERNELS;
    try {
      delete process.env.SPARKMIM_WEBGPU_STOCK_KERNELS;
      expect((await setupBackend('webgpu', { stockKernels: false })).webgpuKernels).toBe('sparkmim');
      expect(registered()).toEqual(['sparkmim']);
      // d/dfilter sum(conv2d(ones, filter)) with a 2x2 input and a 1x1 filter: the sum of the input, 4.
      const gradient = tf.tidy(() => {
        const x = tf.ones([1, 2, 2, 1]) as tf.Tensor4D;
        return tf.grad((filter) => tf.sum(tf.conv2d(x, filter as tf.Tensor4D, 1, 'valid')))(tf.ones([1, 1, 1, 1]));
      });
      expect(Array.from(await gradient.data())).toEqual([4]);
      gradient.dispose();
      expect((await setupBackend('webgpu', { stockKernels: true })).webgpuKernels).toBe('stock');
      expect(registered()).toEqual(['stock']);
      process.env.SPARKMIM_WEBGPU_STOCK_KERNELS = '0';
      expect((await setupBackend('webgpu')).webgpuKernels).toBe('sparkmim');
      process.env.SPARKMIM_WEBGPU_STOCK_KERNELS = '1';
      expect((await setupBackend('webgpu')).webgpuKernels).toBe('stock');
      delete process.env.SPARKMIM_WEBGPU_STOCK_KERNELS;
      const info = await setupBackend('webgpu');
      expect(info.webgpuKernels).toBe(isSoftwareAdapter(info.adapter) ? 'stock' : 'sparkmim');
    } finally {
      if (saved === undefined) delete process.env.SPARKMIM_WEBGPU_STOCK_KERNELS;
      else process.env.SPARKMIM_WEBGPU_STOCK_KERNELS = saved;
    }
  });
});

describe('setupFastestBackend', () => {
  it('tells software WebGPU adapters (SwiftShader, llvmpipe) from GPUs', () => {
    expect(isSoftwareAdapter({ vendor: 'google', architecture: 'swiftshader', description: '', device: '' })).toBe(true);
    expect(isSoftwareAdapter({ vendor: 'mesa', architecture: '', description: 'llvmpipe (LLVM 15.0.6, 256 bits)', device: '' })).toBe(true);
    expect(isSoftwareAdapter({ vendor: 'nvidia', architecture: 'hopper', description: 'NVIDIA H100', device: '' })).toBe(false);
    expect(isSoftwareAdapter(undefined)).toBe(false);
  });

  it('passes a software WebGPU adapter over for cpu, and keeps it when it is the last choice', async () => {
    if (!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu && process.env.CI !== 'true') {
      console.warn('no WebGPU here: skipping');
      return;
    }
    const only = await setupBackend('webgpu');
    if (!isSoftwareAdapter(only.adapter)) {
      console.warn(`a hardware adapter (${only.adapter?.description}): nothing to pass over here`);
      return;
    }
    expect((await setupFastestBackend(['webgpu', 'cpu'])).name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect((await setupFastestBackend(['webgpu'])).name).toBe('webgpu');
    expect((await setupFastestBackend(['webgpu', 'cpu'], { acceptSoftwareAdapter: true })).name).toBe('webgpu');
  });
});
