// tfjs-core's Node bundle registers no gradients, and its ESM build keeps the gradient registrations and
// the chained tensor methods (`x.sum()`) in these two files. Importing them here rather than in the
// libraries keeps the libraries free of side effects: every app, test and benchmark that sets a backend
// up through this package gets gradients, whatever the backend.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';

import * as tf from '@tensorflow/tfjs-core';

// @sparkmim/sparse-ops reads the flag SPARKMIM_FILTER_GRADIENT (its conv2d's filter-gradient method) and
// registers it only on its first convolution; registering it here lets apps and benchmarks set it first.
// The name is repeated rather than imported: sparse-ops' tests depend on this package, not the reverse.
const FILTER_GRADIENT_FLAG = 'SPARKMIM_FILTER_GRADIENT';
const flagRegistry = (tf.env() as unknown as { flagRegistry: Record<string, unknown> }).flagRegistry;
if (!(FILTER_GRADIENT_FLAG in flagRegistry)) tf.env().registerFlag(FILTER_GRADIENT_FLAG, () => 'auto');
