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

  it('sets wasm up with the training kernels registered (a conv filter gradient runs)', async () => {
    const info = await setupBackend('wasm');
    expect(info).toMatchObject({ name: 'wasm', tfjsBackend: 'wasm', canTrain: true });
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
