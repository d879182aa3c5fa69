// Command-line entry for the occupancy-grid example (see occupancy-inpainting.ts):
//   node scripts/run-ts.mjs packages/sparse-ops/examples/run-occupancy-inpainting.ts [backend] [steps]
// or, inside packages/sparse-ops: npm run example -- [backend] [steps]
import * as tf from '@tensorflow/tfjs-core';
// sparse-ops depends on no backend; the runtime package of this repository sets one up with gradients.
import { setupBackend } from '@sparkmim/runtime';
import { runOccupancyInpainting } from './occupancy-inpainting';

const [backend = 'cpu', steps = '60'] = process.argv.slice(2);
tf.env().set('PROD', true); // no tfjs banner or debug checks
await setupBackend(backend);
const result = await runOccupancyInpainting({ steps: Number(steps), log: (line) => console.log(line) });
console.log(JSON.stringify({ backend, ...result }));
