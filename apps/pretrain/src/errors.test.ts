import { WASM_HEAP_LIMIT_BYTES, wasmOutOfMemoryMessage } from './errors';

describe('wasm out of memory, said as such', () => {
  const held = () => 0.975 * WASM_HEAP_LIMIT_BYTES;

  it('explains the two ways tfjs-backend-wasm fails when its heap is full (one thread, several threads)', () => {
    const oneThread = wasmOutOfMemoryMessage(new WebAssembly.RuntimeError('memory access out of bounds'), 'wasm', held);
    expect(oneThread).toBe(
      'the wasm backend ran out of memory (memory access out of bounds; tensors held 3.90 GB, the heap holds at most 4 GB): ' +
        'lower --batch-size, --input-size or --decoder-width (ResNet-18 at 224 with decoder 768 fits batch 8), or train on a GPU backend',
    );
    const threads = wasmOutOfMemoryMessage(new WebAssembly.RuntimeError('Aborted(). Build with -sASSERTIONS for more info.'), 'wasm', held);
    expect(threads).toContain('the wasm backend ran out of memory (Aborted(); tensors held 3.90 GB');
  });

  it('leaves every other failure alone: other backends, other errors, other wasm traps', () => {
    const oob = new WebAssembly.RuntimeError('memory access out of bounds');
    expect(wasmOutOfMemoryMessage(oob, 'cpu', held)).toBeUndefined();
    expect(wasmOutOfMemoryMessage(oob, undefined, held)).toBeUndefined();
    expect(wasmOutOfMemoryMessage(new Error('memory access out of bounds'), 'wasm', held)).toBeUndefined();
    expect(wasmOutOfMemoryMessage(new WebAssembly.RuntimeError('unreachable'), 'wasm', held)).toBeUndefined();
    expect(wasmOutOfMemoryMessage('Aborted()', 'wasm', held)).toBeUndefined();
  });
});
