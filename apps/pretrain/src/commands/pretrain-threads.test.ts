import { WASM_THREADS_ENV } from '@sparkmim/runtime';
import { WASM_THREADS_MIN_DECODER_WORK, wasmThreadsForRun } from './pretrain/backend';

describe('wasm threads for a pretraining run', () => {
  const saved = process.env[WASM_THREADS_ENV];
  afterEach(() => {
    if (saved === undefined) delete process.env[WASM_THREADS_ENV];
    else process.env[WASM_THREADS_ENV] = saved;
  });

  it('runs the quickstart on one thread and the ResNet-18 224 setting on the cores (at most 8)', () => {
    delete process.env[WASM_THREADS_ENV];
    const quickstart = { batchSize: 8, decoderWidth: 32, inputSize: { height: 96, width: 96 } };
    const resnet224 = { batchSize: 8, decoderWidth: 768, inputSize: { height: 224, width: 224 } };
    expect(wasmThreadsForRun(quickstart, 2)).toBe(1);
    expect(wasmThreadsForRun(resnet224, 2)).toBe(2);
    expect(wasmThreadsForRun(resnet224, 64)).toBe(8);
    expect(wasmThreadsForRun(resnet224, 1)).toBe(1);
    // The bound: batch x (H/32) x (W/32) x width^2, a rectangle counted by both sides.
    const atBound = { batchSize: 1, decoderWidth: 2000, inputSize: { height: 32, width: 32 } };
    expect(1 * 1 * 1 * 2000 ** 2).toBe(WASM_THREADS_MIN_DECODER_WORK);
    expect(wasmThreadsForRun(atBound, 4)).toBe(4);
    expect(wasmThreadsForRun({ ...atBound, inputSize: { height: 32, width: 31 } }, 4)).toBe(1);
  });

  it('leaves the choice to SPARKMIM_WASM_THREADS when it is set', () => {
    process.env[WASM_THREADS_ENV] = '1';
    expect(wasmThreadsForRun({ batchSize: 8, decoderWidth: 768, inputSize: { height: 224, width: 224 } }, 2)).toBeUndefined();
  });
});
