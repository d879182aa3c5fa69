import { describeBackends } from '@sparkmim/test-utils';
import { runOccupancyInpainting } from '../examples/occupancy-inpainting';

// The README's reuse-outside-SparK example, shortened: it must train, beat the majority-value baseline on
// the unobserved cells, keep the sparse encoder's features exactly zero there, and free every tensor.
describeBackends('example: occupancy-grid inpainting', () => {
  it('trains a sparse encoder + densify + dense decoder to complete unobserved cells', async () => {
    const result = await runOccupancyInpainting({ steps: 8, batchSize: 2, learningRate: 0.02 });
    expect(result.encoderLeakage).toBe(0);
    expect(result.finalLoss).toBeLessThan(0.85 * result.initialLoss);
    expect(result.holeAccuracy).toBeGreaterThan(result.baselineAccuracy);
  });
});
