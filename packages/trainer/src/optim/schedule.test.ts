import { Lamb } from './lamb';
import { applyLrWd, lrWdAt, peakLearningRate, sparkSchedule } from './schedule';
import type { LrWdSchedule } from './schedule';
import { describeBackends } from '@sparkmim/test-utils';
import { variableOf } from './test-fixtures';
import { defaultBetas } from './betas';

// Expected numbers are worked out by hand from the official formula (utils/lr_control.py, lr_wd_annealing):
//   warm-up (it < wp):  lr = 0.005 peak + 0.995 peak * it / wp
//   after:              lr = 0.001 peak + 0.999 peak * (0.5 + 0.5 cos(pi (it - wp) / (max - 1 - wp)))
//   weight decay:       wd = wd_end + (wd - wd_end) * (0.5 + 0.5 cos(pi it / (max - 1)))
// with peak = 2e-4 * 4096 / 256 = 3.2e-3, wd 0.04 -> wd_end 0.2, wp = 10, max = 31 (so the cosine part
// spans 20 iterations and its midpoint is iteration 20).
const schedule: LrWdSchedule = { peakLr: 3.2e-3, weightDecay: 0.04, weightDecayEnd: 0.2, warmupIterations: 10, maxIterations: 31 };

describe('lrWdAt', () => {
  it('starts warm-up at 0.5% of the peak with the starting weight decay', () => {
    // lr = 0.005 * 3.2e-3 = 1.6e-5; wd: cos(0) = 1, so wd = 0.2 + (0.04 - 0.2) * 1 = 0.04.
    const { lr, weightDecay } = lrWdAt(schedule, 0);
    expect(lr).toBeCloseTo(1.6e-5, 15);
    expect(weightDecay).toBeCloseTo(0.04, 15);
  });

  it('is half-way up in the middle of warm-up', () => {
    // it = 5: lr = 1.6e-5 + 0.995 * 3.2e-3 * 5 / 10 = 1.6e-5 + 1.592e-3 = 1.608e-3.
    expect(lrWdAt(schedule, 5).lr).toBeCloseTo(1.608e-3, 15);
  });

  it('reaches the peak at the end of warm-up', () => {
    // it = wp = 10: ratio 0, cos(0) = 1: lr = 0.001 peak + 0.999 peak = 3.2e-3.
    // wd: it / (max - 1) = 10 / 30 = 1/3, cos(pi/3) = 0.5: wd = 0.2 - 0.16 * 0.75 = 0.08.
    const { lr, weightDecay } = lrWdAt(schedule, 10);
    expect(lr).toBeCloseTo(3.2e-3, 15);
    expect(weightDecay).toBeCloseTo(0.08, 15);
  });

  it('is half-way down mid-run', () => {
    // it = 20: ratio (20 - 10) / (31 - 1 - 10) = 0.5, cos(pi/2) = 0: lr = 3.2e-6 + 0.999 * 3.2e-3 * 0.5 = 1.6016e-3.
    // wd: 20 / 30 = 2/3, cos(2pi/3) = -0.5: wd = 0.2 - 0.16 * 0.25 = 0.16.
    const { lr, weightDecay } = lrWdAt(schedule, 20);
    expect(lr).toBeCloseTo(1.6016e-3, 15);
    expect(weightDecay).toBeCloseTo(0.16, 15);
  });

  it('ends at 0.1% of the peak with the final weight decay', () => {
    // it = max - 1 = 30: ratio 1, cos(pi) = -1: lr = 0.001 * 3.2e-3 = 3.2e-6; wd = 0.2.
    const { lr, weightDecay } = lrWdAt(schedule, 30);
    expect(lr).toBeCloseTo(3.2e-6, 15);
    expect(weightDecay).toBeCloseTo(0.2, 15);
  });

  it('rounds a fractional warm-up half to even, as Python round()', () => {
    // round(10.5) = 10 in Python: iteration 10 is already past warm-up (the peak).
    expect(lrWdAt({ ...schedule, warmupIterations: 10.5 }, 10).lr).toBeCloseTo(3.2e-3, 15);
    // round(11.5) = 12: iteration 11 is still warming up: 1.6e-5 + 0.995 * 3.2e-3 * 11 / 12.
    expect(lrWdAt({ ...schedule, warmupIterations: 11.5 }, 11).lr).toBeCloseTo(1.6e-5 + (0.995 * 3.2e-3 * 11) / 12, 15);
  });

  it('says what it expected for bad iterations and schedules', () => {
    expect(() => lrWdAt(schedule, 31)).toThrow('lrWdAt: iteration is 31, expected a whole number in [0, 30]');
    expect(() => lrWdAt(schedule, -1)).toThrow('lrWdAt: iteration is -1, expected a whole number in [0, 30]');
    expect(() => lrWdAt({ ...schedule, warmupIterations: 30 }, 0)).toThrow(
      'lr/wd schedule: warm-up of 30 iterations must be >= 0 and shorter than maxIterations - 1 = 30 (fewer warm-up epochs or more epochs)',
    );
  });
});

describe('sparkSchedule and peakLearningRate', () => {
  it('scales the base lr by batch / 256 and counts warm-up and total iterations in epochs', () => {
    expect(peakLearningRate(2e-4, 4096)).toBeCloseTo(3.2e-3, 15);
    // SparK's defaults: 1600 epochs, 40 warm-up epochs; ImageNet-1k at batch 4096 drops the last batch: 312 per epoch.
    expect(sparkSchedule({ batchSize: 4096, iterationsPerEpoch: 312 })).toEqual({
      peakLr: (2e-4 * 4096) / 256,
      weightDecay: 0.04,
      weightDecayEnd: 0.2,
      warmupIterations: 40 * 312,
      maxIterations: 1600 * 312,
    });
    expect(() => peakLearningRate(2e-4, 0)).toThrow('peakLearningRate: globalBatchSize is 0, expected a whole number > 0');
  });
});

describe('defaultBetas', () => {
  it('gives SparK betas per backbone', () => {
    expect(defaultBetas('resnet50')).toEqual([0.9, 0.95]);
    expect(defaultBetas('convnext_small')).toEqual([0.9, 0.999]);
    expect(defaultBetas('your_convnet_cnx')).toEqual([0.9, 0.999]);
    expect(() => defaultBetas('vgg16')).toThrow("defaultBetas: no SparK default for backbone 'vgg16'");
  });
});

describeBackends('applyLrWd', () => {
  it('scales the lr and weight decay per group and reports the range', () => {
    const weight = variableOf([1, 2, 3, 4], [2, 2]);
    const bias = variableOf([1, 2], [2]);
    const lamb = new Lamb([
      { name: 'decay', variables: [{ name: 'w', variable: weight }], weightDecayScale: 1, lrScale: 0.5 },
      { name: 'no_decay', variables: [{ name: 'b', variable: bias }], weightDecayScale: 0 },
    ]);
    const applied = applyLrWd(lamb, { lr: 0.01, weightDecay: 0.04 });
    expect(lamb.paramGroups.map((group) => [group.lr, group.weightDecay])).toEqual([
      [0.005, 0.04],
      [0.01, 0],
    ]);
    expect(applied).toEqual({ minLr: 0.005, maxLr: 0.01, minWeightDecay: 0, maxWeightDecay: 0.04 });
    lamb.dispose();
    weight.dispose();
    bias.dispose();
  });
});
