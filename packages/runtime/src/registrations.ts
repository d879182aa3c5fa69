// tfjs-core's Node bundle registers no gradients, and its ESM build keeps the gradient registrations and
// the chained tensor methods (`x.sum()`) in these two files. Importing them here rather than in the
// libraries keeps the libraries free of side effects: every app, test and benchmark that sets a backend
// up through this package gets gradients, whatever the backend.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';
