// Test helpers shared with other workspace packages' tests (`@sparkmim/trainer/testing`, resolved through
// the `@sparkmim/source` condition in this workspace only: the entry is not built or published).
export { kinkFlippedGradients, kinkFlippingForward } from './kink-flip';
export type { FlippedKink } from './kink-flip';
