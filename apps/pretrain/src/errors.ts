/** An error the user can fix: printed as one line, exit code 2, no stack trace. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The most memory the wasm backend can have: a 32-bit WebAssembly heap. */
export const WASM_HEAP_LIMIT_BYTES = 4 * 1024 ** 3;

/**
 * The one-line explanation when `error` is the wasm backend failing inside a kernel the way it does when
 * its heap is full, else undefined. Out of memory, tfjs-backend-wasm 4.22 does not say so: on one thread a
 * kernel writes past the heap (`RuntimeError: memory access out of bounds`), on several it aborts
 * (`RuntimeError: Aborted()`). Both were reproduced by allocating past 4 GB; a SparK step meets them when
 * the batch, input size or decoder width is too large for the heap.
 *
 * @param backend the active tfjs backend's name (undefined before any was set up)
 * @param bytesHeld tf.memory().numBytes, asked only for a wasm failure (tf.memory() needs a backend)
 *
 * @example
 * const line = wasmOutOfMemoryMessage(error, tf.engine().backendName, () => tf.memory().numBytes);
 * if (line) process.stderr.write(`sparkmim: ${line}\n`);
 */
export function wasmOutOfMemoryMessage(error: unknown, backend: string | undefined, bytesHeld: () => number): string | undefined {
  if (backend !== 'wasm' || !(error instanceof WebAssembly.RuntimeError)) return undefined;
  if (!/memory access out of bounds|Aborted\(|OOM|Cannot enlarge memory/.test(error.message)) return undefined;
  const held = (bytesHeld() / 1024 ** 3).toFixed(2);
  return (
    `the wasm backend ran out of memory (${error.message.split('.')[0]}; tensors held ${held} GB, the heap holds at most 4 GB): ` +
    'lower --batch-size, --input-size or --decoder-width (ResNet-18 at 224 with decoder 768 fits batch 8), or train on a GPU backend'
  );
}
