import * as tf from '@tensorflow/tfjs-core';
import * as sparseOps from '@sparkmim/sparse-ops';
import { describeBackends } from '@sparkmim/test-utils';
import * as backbones from './index';
import { backboneFromModule, createTinyConvNet, TinyConvNet, type BackboneForwardOptions } from './index';

const context = { tf, sparseOps, backbones, seed: 0 };
const SMALL = { channels: [4, 4, 8, 8], seed: 0 };

/** A module namespace whose default export returns `make()`. */
const moduleOf = (make: () => unknown) => ({ default: () => make() });

class ThreeMaps extends TinyConvNet {
  override forward(x: tf.Tensor4D, options?: BackboneForwardOptions): tf.Tensor4D[] {
    const maps = super.forward(x, options);
    maps.pop()!.dispose();
    return maps;
  }
}

describeBackends('backboneFromModule', () => {
  it('builds the example convnet from its module (default export: a function of the context, seeded)', async () => {
    const namespace = await import('./examples/tiny-convnet');
    const first = backboneFromModule(namespace, context, 'tiny-convnet.ts');
    const again = backboneFromModule(namespace, context, 'tiny-convnet.ts');
    expect(first).toBeInstanceOf(TinyConvNet);
    expect(first.featureChannels).toEqual([8, 16, 32, 64]);
    // Seeded by the context: the same weights twice.
    const [a, b] = [first.namedParameters()[0].variable, again.namedParameters()[0].variable];
    expect(Array.from(await a.data())).toEqual(Array.from(await b.data()));
    // A Backbone object as the default export, and a class, are taken as they are.
    const instance = createTinyConvNet(SMALL);
    expect(backboneFromModule({ default: instance }, context, 'object.js')).toBe(instance);
    class MyNet extends TinyConvNet {
      constructor({ seed }: { seed?: number }) {
        super({ channels: [4, 4, 8, 8], seed });
      }
    }
    const fromClass = backboneFromModule({ default: MyNet }, context, 'class.js');
    expect(fromClass).toBeInstanceOf(MyNet);
    for (const net of [first, again, instance, fromClass]) net.dispose();
  });

  it('names what is wrong with a malformed module in one line', () => {
    const expectError = (namespace: unknown, message: string) => {
      let thrown: Error | undefined;
      try {
        backboneFromModule(namespace, context, 'my-convnet.js');
      } catch (error) {
        thrown = error as Error;
      }
      expect(thrown?.message).toBe(message);
      expect(thrown?.message).not.toContain('\n');
    };
    expectError(
      {},
      'my-convnet.js: no default export; expected `export default` of a Backbone or of a function ({ tf, sparseOps, backbones, seed }) => Backbone',
    );
    expectError(
      moduleOf(() => ({ kind: 'custom', downsampleRatio: 32, featureChannels: [4, 4, 8, 8] })),
      "my-convnet.js: the backbone has no method forward() (a Backbone extends sparse-ops' Module and has forward(x, { active }))",
    );
    expectError(
      moduleOf(() => new ThreeMaps(SMALL)),
      'my-convnet.js: forward returned 3 feature map(s), expected 4 (strides 4, 8, 16, 32; largest first)',
    );
    expectError(
      moduleOf(() => Object.assign(createTinyConvNet(SMALL), { downsampleRatio: 16 })),
      "my-convnet.js: downsampleRatio is 16, expected 32 (SparK's decoder upsamples the last map 32 times)",
    );
    expectError(
      moduleOf(() => Object.assign(createTinyConvNet(SMALL), { featureChannels: [4, 4, 8] })),
      'my-convnet.js: featureChannels is [4,4,8], expected 4 positive whole numbers (one per feature map, largest map first)',
    );
    expectError(
      moduleOf(() => Object.assign(createTinyConvNet(SMALL), { featureChannels: [4, 4, 8, 16] })),
      'my-convnet.js: feature map 3 of a [1, 64, 64, 3] input is [1, 2, 2, 8], expected [1, 2, 2, 16] (stride 32, featureChannels[3] = 16)',
    );
    expectError(
      moduleOf(() => {
        throw new Error('out of ideas');
      }),
      'my-convnet.js: its default export threw: out of ideas',
    );
    // A look-alike not built on this copy of sparse-ops' Module (e.g. a file importing its own copy).
    const lookAlike = { kind: 'custom', downsampleRatio: 32, featureChannels: [4, 4, 8, 8] } as Record<string, unknown>;
    for (const method of ['forward', 'namedParameters', 'stateEntries', 'train', 'eval', 'dispose']) lookAlike[method] = () => [];
    expectError(
      { default: lookAlike },
      "my-convnet.js: the backbone is not a Module of this program's @sparkmim/sparse-ops: build it from the factory's context (context.sparseOps.Module, its layers) rather than from an import of your own",
    );
  });
});
