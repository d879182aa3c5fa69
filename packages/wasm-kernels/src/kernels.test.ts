// Every kernel of this package against tfjs-cpu's (a different implementation of the same definitions),
// on shapes that exercise padding, strides, ties and chunking. The cross-backend comparison is the point,
// so these specs set both backends up themselves rather than through describeBackends.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmTrainingKernels } from './index';
import { asLeadingReduction } from './kernels/Sum';
import { asBlockSwap } from './kernels/Transpose';

type Values = { shape: number[]; values: Float32Array }[];

/** Runs `fn` on `backend` and reads its results back. */
function on(backend: string, fn: () => tf.Tensor | tf.Tensor[]): Values {
  tf.setBackend(backend);
  const before = tf.memory().numTensors;
  const dataBefore = tf.engine().backend.numDataIds();
  const results = tf.tidy(fn);
  const list = Array.isArray(results) ? results : [results];
  const read = list.map((t) => ({ shape: t.shape, values: Float32Array.from(t.dataSync()) }));
  tf.dispose(list);
  // No tensor and no backend buffer (our kernels' intermediates) left behind.
  expect({ backend, tensors: tf.memory().numTensors, buffers: tf.engine().backend.numDataIds() }).toEqual({
    backend,
    tensors: before,
    buffers: dataBefore,
  });
  return read;
}

function expectClose(actual: Values, expected: Values, tolerance = 1e-4): void {
  expect(actual.map((a) => a.shape)).toEqual(expected.map((e) => e.shape));
  actual.forEach((a, n) => {
    const e = expected[n].values;
    const scale = Math.max(1, ...Array.from(e, Math.abs));
    let worst = 0;
    for (let i = 0; i < a.values.length; i++) worst = Math.max(worst, Math.abs(a.values[i] - e[i]));
    expect({ output: n, worstError: worst / scale < tolerance ? 'ok' : worst / scale }).toEqual({ output: n, worstError: 'ok' });
  });
}

/** The same computation on cpu and wasm. */
function compare(fn: () => tf.Tensor | tf.Tensor[], tolerance?: number): void {
  expectClose(on('wasm', fn), on('cpu', fn), tolerance);
}

const random = (shape: number[], seed: number) => tf.randomUniform(shape, -1, 1, 'float32', seed);

/** Explicit NHWC padding: rows `top`/`bottom`, columns `left`/`right`. */
const padHW = (top: number, bottom: number, left: number, right: number): tf.backend_util.ExplicitPadding => [
  [0, 0],
  [top, bottom],
  [left, right],
  [0, 0],
];

beforeAll(async () => {
  tf.env().set('IS_TEST', true);
  registerWasmTrainingKernels();
  expect(await tf.setBackend('wasm')).toBe(true);
  expect(await tf.setBackend('cpu')).toBe(true);
});

describe('conv2d gradients on wasm (Conv2DBackpropFilter, Conv2DBackpropInput)', () => {
  const cases: { name: string; x: number[]; filter: number[]; stride: number; pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding }[] = [
    { name: '3x3 stride 1 same', x: [2, 7, 6, 3], filter: [3, 3, 3, 4], stride: 1, pad: 'same' },
    {
      name: '3x3 stride 2 pad 1 (odd size)',
      x: [2, 9, 7, 4],
      filter: [3, 3, 4, 5],
      stride: 2,
      pad: padHW(1, 1, 1, 1),
    },
    {
      name: '7x7 stride 2 pad 3 (a stem)',
      x: [1, 12, 10, 3],
      filter: [7, 7, 3, 4],
      stride: 2,
      pad: padHW(3, 3, 3, 3),
    },
    // Channel counts past one 32-wide tile of the filter transposes, and not multiples of it.
    { name: '3x3 stride 1 same, 35 to 33 channels', x: [1, 4, 3, 35], filter: [3, 3, 35, 33], stride: 1, pad: 'same' },
    {
      name: '4x4 stride 2 pad 1, 33 to 34 channels',
      x: [1, 6, 5, 33],
      filter: [4, 4, 33, 34],
      stride: 2,
      pad: padHW(1, 1, 1, 1),
    },
    { name: '1x1 stride 2 (a downsample shortcut)', x: [2, 8, 8, 4], filter: [1, 1, 4, 6], stride: 2, pad: 'valid' },
    { name: '2x2 stride 2 valid on an odd size', x: [2, 7, 9, 3], filter: [2, 2, 3, 2], stride: 2, pad: 'valid' },
    {
      name: '3x3 valid, uneven explicit padding',
      x: [1, 6, 5, 2],
      filter: [3, 3, 2, 3],
      stride: 1,
      pad: padHW(0, 2, 1, 0),
    },
  ];
  for (const { name, x: xShape, filter: filterShape, stride, pad } of cases) {
    it(name, () => {
      compare(() => {
        const x = random(xShape, 1) as tf.Tensor4D;
        const filter = random(filterShape, 2) as tf.Tensor4D;
        const y = tf.conv2d(x, filter, stride, pad as never);
        const weights = random(y.shape, 3);
        const [dx, dFilter] = tf.grads((a, b) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad as never), weights)))([
          x,
          filter,
        ]);
        return [y, dx, dFilter];
      });
    });
  }

  it('conv2dTranspose 4x4 stride 2 pad 1 (the decoder upsampling): forward and both gradients', () => {
    compare(() => {
      const x = random([2, 5, 4, 6], 4) as tf.Tensor4D;
      const filter = random([4, 4, 3, 6], 5) as tf.Tensor4D;
      const outShape: [number, number, number, number] = [2, 10, 8, 3];
      const pad = padHW(1, 1, 1, 1);
      const y = tf.conv2dTranspose(x, filter, outShape, 2, pad as never);
      const weights = random(outShape, 6);
      const [dx, dFilter] = tf.grads((a, b) =>
        tf.sum(tf.mul(tf.conv2dTranspose(a as tf.Tensor4D, b as tf.Tensor4D, outShape, 2, pad as never), weights)),
      )([x, filter]);
      return [y, dx, dFilter];
    });
  });
});

describe('depthwiseConv2d gradients on wasm (DepthwiseConv2dNativeBackpropInput/Filter)', () => {
  const cases = [
    {
      name: '7x7 pad 3 (ConvNeXt)',
      x: [2, 9, 8, 4],
      filter: [7, 7, 4, 1],
      stride: 1,
      pad: padHW(3, 3, 3, 3),
    },
    { name: '3x3 same, multiplier 2', x: [2, 6, 5, 3], filter: [3, 3, 3, 2], stride: 1, pad: 'same' },
    { name: '3x3 stride 2 valid', x: [1, 9, 8, 2], filter: [3, 3, 2, 1], stride: 2, pad: 'valid' },
  ] as const;
  for (const { name, x: xShape, filter: filterShape, stride, pad } of cases) {
    it(name, () => {
      compare(() => {
        const x = random([...xShape], 11) as tf.Tensor4D;
        const filter = random([...filterShape], 12) as tf.Tensor4D;
        const y = tf.depthwiseConv2d(x, filter, stride, pad as never);
        const weights = random(y.shape, 13);
        const [dx, dFilter] = tf.grads((a, b) =>
          tf.sum(tf.mul(tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad as never), weights)),
        )([x, filter]);
        return [y, dx, dFilter];
      });
    });
  }
});

describe('maxPool gradient on wasm (MaxPoolGrad)', () => {
  it('3x3 stride 2 pad 1 after a ReLU: ties go to the first maximum of each window', () => {
    compare(() => {
      const x = tf.relu(random([2, 9, 8, 3], 21)) as tf.Tensor4D;
      const pad = padHW(1, 1, 1, 1);
      const weights = random([2, 5, 4, 3], 22);
      return tf.grad((a) => tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, 3, 2, pad as never), weights)))(x);
    });
  });

  it('2x2 stride 2 valid and 3x3 same on negative values', () => {
    compare(() => {
      const x = tf.sub(random([1, 6, 7, 2], 23), 2) as tf.Tensor4D;
      return [
        tf.grad((a) => tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, 2, 2, 'valid'), random([1, 3, 3, 2], 24))))(x),
        tf.grad((a) => tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, 3, 1, 'same'), random([1, 6, 7, 2], 25))))(x),
      ];
    });
  });
});

describe('unsortedSegmentSum and gather on wasm', () => {
  it('unsortedSegmentSum sums rows by id, and is the gradient of gather', () => {
    compare(() => {
      const x = random([6, 2, 3], 31);
      const ids = tf.tensor1d([2, 0, 2, 3, 0, 2], 'int32');
      const rows = random([5, 4], 32);
      const picked = tf.tensor1d([4, 0, 4, 1, 4], 'int32');
      const weights = random([5, 4], 33);
      return [tf.unsortedSegmentSum(x, ids, 5), tf.grad((r) => tf.sum(tf.mul(tf.gather(r, picked), weights)))(rows)];
    });
  });

  it('gather with batchDims 1 and an axis after it', () => {
    compare(() => {
      const x = random([2, 3, 5, 2], 34);
      const indices = tf.tensor2d(
        [
          [4, 0, 4],
          [1, 2, 3],
        ],
        [2, 3],
        'int32',
      );
      return [tf.gather(x, indices, 2, 1), tf.gather(x, tf.tensor2d([[2], [0]], [2, 1], 'int32'), 1, 1)];
    });
  });

  it('an index out of range names the range', () => {
    tf.setBackend('wasm');
    const x = tf.zeros([2, 3]);
    const indices = tf.tensor2d([[0], [5]], [2, 1], 'int32');
    expect(() => tf.gather(x, indices, 1, 1)).toThrow('GatherV2: the index value 5 is not in [0, 2]');
    tf.dispose([x, indices]);
  });

  // Axis 0 without batch dimensions (sparse-ops' gatherRows) is a row copy of our own for float32 and int32.
  it('gather of whole rows (axis 0): rank-1, rank-2 and rank-4 params, repeated, 2-D and empty index lists', () => {
    compare(() => {
      const vector = random([7], 35);
      const rows = random([6, 5], 36);
      const maps = random([4, 3, 2, 3], 37);
      const repeated = tf.tensor1d([5, 0, 5, 5, 2, 0], 'int32');
      return [
        tf.gather(vector, tf.tensor1d([6, 0, 3, 3], 'int32')),
        tf.gather(rows, repeated),
        tf.gather(rows, tf.tensor1d([], 'int32')),
        tf.gather(rows, tf.tensor2d([3, 1, 1, 0], [2, 2], 'int32'), -2),
        tf.gather(maps, tf.tensor1d([3, 0, 3, 1, 2], 'int32')),
        tf.gather(maps, tf.tensor1d([], 'int32')),
        tf.gather(tf.zeros([0, 4]), tf.tensor1d([], 'int32')),
      ];
    });
  });

  it('transpose: block swaps (2-D, batched, with runs, size-1 axes, int32) and a permutation left to the backend', () => {
    // [2, 0, 1] merges axes 0 and 1 into one 2-D swap; [1, 3, 0, 2] swaps no two blocks (the stock kernel).
    expect(asBlockSwap([3, 37, 35], [2, 0, 1])).toEqual([1, 111, 35, 1]);
    expect(asBlockSwap([2, 3, 4, 5], [1, 3, 0, 2])).toBeUndefined();
    compare(() => {
      const cube = random([3, 37, 35], 41);
      return [
        tf.transpose(random([45, 70], 40)),
        tf.transpose(cube, [0, 2, 1]),
        tf.transpose(cube, [1, 0, 2]),
        tf.transpose(random([4, 3, 20], 45), [1, 0, 2]),
        tf.transpose(random([2, 5, 1, 3, 4], 42), [0, 3, 2, 1, 4]),
        tf.transpose(random([5, 1, 3], 43), [0, 2, 1]),
        tf.transpose(cube, [2, 0, 1]),
        tf.transpose(random([2, 3, 4, 5], 44), [1, 3, 0, 2]),
        tf.transpose(tf.reshape(tf.range(0, 24, 1, 'int32'), [2, 3, 4]), [2, 1, 0]),
        tf.transpose(tf.reshape(tf.range(0, 24, 1, 'int32'), [4, 6])),
      ];
    });
  });

  it('matMul with transposed operands (2-D and batched, each side and both) and its gradients, as a dense Linear trains', () => {
    compare(() => {
      const a = random([37, 19], 60);
      const b = random([37, 23], 61);
      const c = random([23, 19], 62);
      const batchedA = random([3, 11, 7], 63);
      const batchedB = random([3, 5, 11], 64);
      const [da, dw] = tf.grads((x, w) => tf.sum(tf.square(tf.matMul(x, w))))([random([29, 19], 65), random([19, 13], 66)]);
      return [
        tf.matMul(a, b, true, false),
        tf.matMul(b, c, false, false),
        tf.matMul(a, c, false, true),
        tf.matMul(c, b, true, true),
        tf.matMul(batchedA, batchedB, true, true),
        tf.matMul(batchedB, batchedA, false, false),
        da,
        dw,
      ];
    });
  });

  it('sum over leading axes (rows, batch-norm style, keepDims, size-1 axes first) and over others (the backend)', () => {
    expect(asLeadingReduction([1, 1, 40, 6], [0, 1, 2])).toEqual([40, 6]);
    expect(asLeadingReduction([4, 6], [1])).toBeUndefined();
    compare(() => {
      const rows = random([40, 6], 46);
      const maps = random([2, 3, 5, 4], 47);
      return [
        tf.sum(rows, 0),
        tf.sum(rows, 0, true),
        tf.sum(maps, [0, 1, 2]),
        tf.sum(maps, [1, 0], true),
        tf.sum(tf.reshape(maps, [1, 6, 5, 4]), [1, 2]),
        tf.sum(maps, [1, 2]),
        tf.sum(maps, -1),
        tf.sum(maps),
        tf.sum(tf.reshape(tf.range(0, 12, 1, 'int32'), [3, 4]), 0),
      ];
    });
  });

  it('mean over leading axes (tf.moments over [B, H, W]) and over others (the backend), and its gradient', () => {
    compare(() => {
      const rows = random([40, 6], 48);
      const maps = random([2, 3, 5, 4], 49);
      const { mean, variance } = tf.moments(maps, [0, 1, 2]);
      return [
        tf.mean(rows, 0),
        tf.mean(maps, [0, 1, 2], true),
        tf.mean(maps, [1, 2]),
        tf.mean(maps, -1),
        tf.mean(maps),
        mean,
        variance,
        tf.grad((x) => tf.sum(tf.square(tf.mean(x, [0, 1]))))(maps),
      ];
    });
  });

  it('gather of int32 rows keeps the dtype and the values; its gradient with repeated rows sums them', () => {
    const run = () => {
      const ids = tf.tensor2d([1, 2, 3, 4, 5, 6, -7, 8, 2147483647], [3, 3], 'int32');
      const picked = tf.gather(ids, tf.tensor1d([2, 2, 0], 'int32'));
      const rows = random([5, 8], 38);
      const weights = random([7, 8], 39);
      const grad = tf.grad((r) => tf.sum(tf.mul(tf.gather(r, tf.tensor1d([4, 4, 0, 1, 4, 0, 3], 'int32')), weights)))(rows);
      // Rows of 16 values and more are copied with copyWithin, shorter ones by a loop: both, for int32.
      const wide = tf.gather(tf.reshape(tf.range(-30, 30, 1, 'int32'), [3, 20]), tf.tensor1d([2, 0, 2, 1], 'int32'));
      return [picked, grad, wide];
    };
    tf.setBackend('wasm');
    expect(tf.tidy(() => run()[0].dtype)).toBe('int32');
    compare(run);
  });

  it('a row index out of range throws what tfjs-cpu throws and leaves no buffer behind', () => {
    const cases: [number[], number[]][] = [
      [
        [4, 3],
        [0, 4],
      ],
      [[4, 3], [-1]],
      [[5], [2, 7, 1]],
    ];
    for (const [shape, picked] of cases) {
      const message = (backend: string): string => {
        tf.setBackend(backend);
        const buffers = tf.engine().backend.numDataIds();
        const x = tf.ones(shape);
        const indices = tf.tensor1d(picked, 'int32');
        let thrown = 'nothing thrown';
        try {
          tf.gather(x, indices).dispose();
        } catch (error) {
          thrown = (error as Error).message;
        }
        tf.dispose([x, indices]);
        expect({ backend, buffers: tf.engine().backend.numDataIds() }).toEqual({ backend, buffers });
        return thrown;
      };
      const expected = message('cpu');
      expect(expected).toMatch(/^GatherV2: the index value -?\d+ is not in \[0, \d+\]$/);
      expect(message('wasm')).toBe(expected);
    }
  });
});

describe('Identity on wasm', () => {
  it('tf.clone shares the buffer: values equal, and either tensor outlives the other', () => {
    tf.setBackend('wasm');
    const buffersBefore = tf.engine().backend.numDataIds();
    const original = tf.tensor2d([
      [1, 2],
      [3, 4],
    ]);
    const copy = tf.clone(original);
    expect(tf.engine().backend.numDataIds()).toBe(buffersBefore + 1);
    original.dispose();
    expect(Array.from(copy.dataSync())).toEqual([1, 2, 3, 4]);
    const again = tf.clone(copy);
    copy.dispose();
    expect(Array.from(tf.add(again, 1).dataSync())).toEqual([2, 3, 4, 5]);
    again.dispose();
  });

  it('a variable trained through clones keeps its own values (assign does not write into a shared buffer)', () => {
    compare(() => {
      const variable = tf.variable(tf.tensor1d([1, -2, 3]));
      const snapshot = tf.clone(variable);
      const optimizer = tf.train.sgd(0.5);
      optimizer.minimize(() => tf.sum(tf.square(tf.mul(variable, tf.clone(variable)))) as tf.Scalar);
      const result = [tf.clone(variable), snapshot];
      optimizer.dispose();
      variable.dispose();
      return result;
    });
  });
});

describe('Tile on wasm', () => {
  it('tiles every axis, broadcasts a [1, 1, 1, C] row, and keeps int32 and bool', () => {
    compare(() => [
      tf.tile(random([2, 3, 4], 41), [2, 1, 3]),
      tf.tile(random([1, 1, 1, 5], 42), [2, 3, 4, 1]),
      tf.broadcastTo(random([1, 3, 1], 43), [2, 3, 4]),
      tf.cast(tf.tile(tf.tensor1d([1, -2, 3], 'int32'), [3]), 'float32'),
      tf.cast(tf.tile(tf.tensor2d([[true], [false]], [2, 1], 'bool'), [2, 3]), 'float32'),
    ]);
  });
});
