import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from '@sparkmim/runtime';
import { BACKEND_SKIPS } from './skips';

/**
 * The backends every numeric spec runs on, unless SPARKMIM_TEST_BACKENDS names others (`cpu,wasm,webgpu`
 * adds the wasm copies; CI runs only the golden suites on wasm, see scripts/test.sh).
 */
export const ALL_TEST_BACKENDS = ['cpu', 'webgpu'] as const;

export function selectedTestBackends(): string[] {
  const fromEnv = process.env.SPARKMIM_TEST_BACKENDS;
  return fromEnv
    ? fromEnv
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [...ALL_TEST_BACKENDS];
}

export interface BackendContext {
  /** The backend this copy of the suite runs on. */
  backend: string;
}

function webGpuUnavailableReason(): string | undefined {
  const scope = globalThis as { navigator?: { gpu?: unknown }; __sparkmimWebGpuLoadError?: Error };
  if (scope.navigator?.gpu) return undefined;
  const loadError = scope.__sparkmimWebGpuLoadError;
  return loadError ? `the 'webgpu' package failed to load: ${loadError.message}` : "the 'webgpu' package is not installed";
}

/** Returns the skip reason when `backend` is listed as unable to run `specPath`. */
export function skipReason(backend: string, specPath: string): string | undefined {
  return BACKEND_SKIPS.find((skip) => skip.backend === backend && specPath.includes(skip.spec))?.reason;
}

/**
 * Runs the same suite on every test backend (tfjs's describeWithFlags): the specs inside `fn` are
 * registered once per backend, each checks afterwards that it left no tensor behind, and a backend can
 * skip a spec only through the visible list in `skips.ts`.
 *
 * In CI (CI=true) a backend that cannot be set up fails the run; elsewhere it is skipped with a warning.
 *
 * @example
 * describeBackends('sparseConv2d', ({ backend }) => {
 *   it('masks the output', async () => { ... });
 * });
 */
export function describeBackends(name: string, fn: (context: BackendContext) => void): void {
  for (const backend of selectedTestBackends()) {
    const unavailable = backend === 'webgpu' ? webGpuUnavailableReason() : undefined;
    if (unavailable && process.env.CI !== 'true') {
      // Visible in the summary as skipped specs; CI never takes this branch.
      console.warn(`${name}: skipping the webgpu copy of this suite: ${unavailable}`);
      describe.skip(`${name} [${backend}]`, () => fn({ backend }));
      continue;
    }
    describe(`${name} [${backend}]`, () => {
      let tensorsBefore = 0;
      let wasIsTest = false;
      beforeAll(async () => {
        if (unavailable) throw new Error(`WebGPU is required in CI but unavailable: ${unavailable}`);
        await setupBackend(backend);
        if (backend === 'wasm') {
          // tfjs's test-mode leak check counts the copies tf.customGrad saves for its backward pass as
          // leaks on wasm, whose Identity kernel copies where cpu's shares the buffer; the per-spec tensor
          // count below still catches real leaks.
          wasIsTest = tf.env().getBool('IS_TEST');
          tf.env().set('IS_TEST', false);
        }
      });
      afterAll(() => {
        if (backend === 'wasm') tf.env().set('IS_TEST', wasIsTest);
      });
      beforeEach(() => {
        tensorsBefore = tf.memory().numTensors;
      });
      afterEach(() => {
        expect({ liveTensorsAfterSpec: tf.memory().numTensors }).toEqual({ liveTensorsAfterSpec: tensorsBefore });
      });
      const globalScope = globalThis as unknown as { it: jest.It; test: jest.It };
      const realIt = globalScope.it;
      const backendIt = ((specName: string, specFn?: jest.ProvidesCallback, timeout?: number) => {
        const reason = skipReason(backend, `${name} > ${specName}`);
        if (reason) return realIt.skip(`${specName} (skipped on ${backend}: ${reason})`, specFn, timeout);
        return realIt(specName, specFn, timeout);
      }) as jest.It;
      Object.assign(backendIt, realIt);
      globalScope.it = backendIt;
      globalScope.test = backendIt;
      try {
        fn({ backend });
      } finally {
        globalScope.it = realIt;
        globalScope.test = realIt;
      }
    });
  }
}
