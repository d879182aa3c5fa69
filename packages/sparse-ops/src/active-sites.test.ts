import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@sparkmim/test-utils';
import { ActiveSites, activeAt } from './active-sites';
import { maskAt, maskFromRows } from './testing/reference';

async function valuesOf(mask: tf.Tensor): Promise<number[]> {
  return Array.from(await mask.data());
}

describeBackends('ActiveSites', () => {
  it('derives nearest masks at multiples and divisors, rectangular and mixed, matching the loop reference', async () => {
    const { values, shape } = maskFromRows(['1011/0110', '0101/1100']);
    const sites = ActiveSites.fromArray(values, shape);
    try {
      // [height, width]: both finer; finer by different factors; both coarser; finer in height while
      // coarser in width; the base resolution itself.
      for (const [height, width] of [
        [4, 8],
        [8, 4],
        [1, 2],
        [6, 2],
        [2, 4],
      ] as const) {
        const derived = sites.at(height, width);
        expect({ height, width, shape: derived.shape }).toEqual({ height, width, shape: [2, height, width, 1] });
        expect({ height, width, values: await valuesOf(derived) }).toEqual({
          height,
          width,
          values: Array.from(maskAt(values, shape, height, width)),
        });
      }
    } finally {
      sites.dispose();
    }
  });

  it('caches each derived mask and count, and frees them all on dispose', async () => {
    const before = tf.memory().numTensors;
    const sites = ActiveSites.fromArray([1, 0, 0, 1, 1, 1], [1, 2, 3]);
    const first = sites.at(4, 6);
    const tensorsAfterFirst = tf.memory().numTensors;
    expect(sites.at(4, 6)).toBe(first);
    expect(tf.memory().numTensors).toBe(tensorsAfterFirst);
    expect(sites.at(2, 3)).toBe(sites.base);
    expect(Array.from(await sites.countAt(4, 6).data())).toEqual([16]);
    expect(sites.countAt(4, 6)).toBe(sites.countAt(4, 6));
    // Inside a tidy the cached mask survives (tf.keep), so later layers can reuse it.
    const inTidy = tf.tidy(() => sites.at(8, 12));
    expect(inTidy.isDisposed).toBe(false);
    sites.dispose();
    expect(first.isDisposed).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => sites.at(4, 6)).toThrow('ActiveSites.at: this ActiveSites was disposed');
  });

  it('leaves a caller-owned base alone on dispose', () => {
    const base = tf.tensor4d([1, 0, 1, 1], [1, 2, 2, 1]);
    const sites = new ActiveSites(base);
    expect(sites.allActive).toBe(false);
    sites.at(4, 4);
    sites.dispose();
    expect(base.isDisposed).toBe(false);
    base.dispose();
  });

  it('knows when a validated mask is all active', async () => {
    const full = ActiveSites.fromArray([1, 1], [2, 1, 1]);
    expect(full.allActive).toBe(true);
    full.dispose();
    const partial = ActiveSites.fromArray([1, 0], [2, 1, 1]);
    expect(partial.allActive).toBe(false);
    partial.dispose();
    const ones = tf.ones([1, 2, 2, 1]) as tf.Tensor4D;
    const checked = await ActiveSites.checked(ones);
    expect(checked.allActive).toBe(true);
    checked.dispose();
    ones.dispose();
  });

  it('activeAt gives the same mask for a plain tensor as ActiveSites does', async () => {
    const base = tf.tensor4d([1, 0, 0, 1, 0, 1, 1, 0], [2, 2, 2, 1]);
    const sites = new ActiveSites(base);
    const features = tf.zeros([2, 6, 4, 3]);
    const fromTensor = activeAt(base, features);
    expect(await valuesOf(fromTensor)).toEqual(await valuesOf(sites.at(6, 4)));
    tf.dispose([fromTensor, features, base]);
    sites.dispose();
  });

  it('rejects a non-binary mask, naming the value and where it is', async () => {
    expect(() => ActiveSites.fromArray([1, 0.5, 0, 1], [1, 2, 2])).toThrow(
      'ActiveSites.fromArray: the mask [1, 2, 2, 1] must hold only 0 and 1, got 0.5 at index 1',
    );
    const mask = tf.tensor4d([1, 0, 2, 1], [1, 2, 2, 1]);
    await expect(ActiveSites.checked(mask)).rejects.toThrow('ActiveSites.checked: the mask [1, 2, 2, 1] must hold only 0 and 1, got 2 at index 2');
    mask.dispose();
  });

  it('names expected and received for a wrong value count, rank or resolution', () => {
    expect(() => ActiveSites.fromArray([1, 0, 1], [1, 2, 2])).toThrow('ActiveSites.fromArray: expected 4 values for [1, 2, 2], got 3');
    tf.tidy(() => {
      expect(() => new ActiveSites(tf.ones([1, 2, 2, 3]) as tf.Tensor4D)).toThrow(
        'ActiveSites: the mask must have shape [B, h, w, 1], got [1, 2, 2, 3]',
      );
    });
    const sites = ActiveSites.fromArray([1, 0, 0, 1], [1, 2, 2]);
    expect(() => sites.at(5, 4)).toThrow(
      'ActiveSites.at: active mask [1, 2, 2, 1] does not divide features of size 5x4 (height 5 is neither a multiple nor a divisor of 2)',
    );
    expect(() => sites.at(4, 3)).toThrow(
      'ActiveSites.at: active mask [1, 2, 2, 1] does not divide features of size 4x3 (width 3 is neither a multiple nor a divisor of 2)',
    );
    tf.tidy(() => {
      expect(() => activeAt(sites, tf.zeros([2, 4, 4, 1]), 'myOp')).toThrow(
        'myOp: active mask [1, 2, 2, 1] has batch 1 but features [2, 4, 4, 1] have batch 2',
      );
    });
    sites.dispose();
  });
});
