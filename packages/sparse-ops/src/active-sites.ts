import * as tf from '@tensorflow/tfjs-core';

/**
 * Which sites of a feature map are active (visible), at one base resolution, with the masks derived for
 * every other resolution that is an integer multiple or divisor of it.
 *
 * The base mask is `[B, h, w, 1]`, 1 = active, 0 = inactive. Derived masks use nearest-neighbour
 * resampling (each base site covers an `H/h x W/w` block; a coarser map takes the top-left site of each
 * block), and are cached per shape, so a network that asks for the same resolution in every layer builds
 * it once. The cache is owned by this object: call {@link ActiveSites.dispose} when done. The base tensor
 * stays owned by the caller.
 *
 * @example
 * const sites = new ActiveSites(tf.tensor4d([1, 0, 0, 1], [1, 2, 2, 1]));
 * const at8x8 = sites.at(8, 8); // [1, 8, 8, 1], each base site repeated as a 4x4 block
 * sites.dispose();
 */
export class ActiveSites {
  private readonly derived = new Map<string, tf.Tensor4D>();
  private readonly counts = new Map<string, tf.Scalar>();
  private disposed = false;
  private ownsBase = false;
  private everySiteActive = false;

  /** @param base `[B, h, w, 1]` float mask, 1 = active. Not copied and not disposed by this object. */
  constructor(readonly base: tf.Tensor4D) {
    if (base.rank !== 4 || base.shape[3] !== 1) {
      throw new Error(`ActiveSites: the mask must have shape [B, h, w, 1], got [${base.shape.join(', ')}]`);
    }
  }

  /**
   * True when the mask is known to mark every site active (it was validated by {@link ActiveSites.checked}
   * or {@link ActiveSites.fromArray}). The ops then skip masking entirely and run the ordinary dense op,
   * so an all-active mask costs nothing; a mask wrapped unread by the constructor is never assumed full.
   */
  get allActive(): boolean {
    return this.everySiteActive;
  }

  /**
   * Validates that every value of `mask` is 0 or 1 (reads the tensor, so it is async) and wraps it.
   *
   * @example
   * const sites = await ActiveSites.checked(mask); // throws on a value other than 0 or 1
   */
  static async checked(mask: tf.Tensor4D): Promise<ActiveSites> {
    const sites = new ActiveSites(mask);
    sites.everySiteActive = assertBinary(await mask.data(), mask.shape, 'ActiveSites.checked');
    return sites;
  }

  /**
   * Builds the base mask from JS values (validated to be 0 or 1) and wraps it; this object then owns it.
   *
   * @example
   * const sites = ActiveSites.fromArray([1, 0, 0, 1], [1, 2, 2]);
   */
  static fromArray(values: ArrayLike<number>, [batch, height, width]: [number, number, number]): ActiveSites {
    if (values.length !== batch * height * width) {
      throw new Error(`ActiveSites.fromArray: expected ${batch * height * width} values for [${batch}, ${height}, ${width}], got ${values.length}`);
    }
    const everySiteActive = assertBinary(values, [batch, height, width, 1], 'ActiveSites.fromArray');
    const sites = new ActiveSites(tf.tensor4d(Float32Array.from(values), [batch, height, width, 1]));
    sites.ownsBase = true;
    sites.everySiteActive = everySiteActive;
    return sites;
  }

  get batchSize(): number {
    return this.base.shape[0];
  }

  get height(): number {
    return this.base.shape[1];
  }

  get width(): number {
    return this.base.shape[2];
  }

  /**
   * The mask at `height x width`: `[B, height, width, 1]`. Cached; owned by this object (do not dispose).
   * Throws when a dimension is neither a multiple nor a divisor of the base dimension.
   */
  at(height: number, width: number, caller = 'ActiveSites.at'): tf.Tensor4D {
    this.assertAlive(caller);
    if (height === this.height && width === this.width) return this.base;
    const key = `${height}x${width}`;
    let mask = this.derived.get(key);
    if (!mask) {
      assertDivides(this.base.shape, [this.batchSize, height, width], caller);
      mask = tf.keep(resampleMask(this.base, height, width));
      this.derived.set(key, mask);
    }
    return mask;
  }

  /** Number of active sites at `height x width` over the whole batch, as a scalar tensor (cached). */
  countAt(height: number, width: number, caller = 'ActiveSites.countAt'): tf.Scalar {
    const key = `${height}x${width}`;
    let count = this.counts.get(key);
    if (!count) {
      const mask = this.at(height, width, caller);
      count = tf.keep(tf.sum(mask)) as tf.Scalar;
      this.counts.set(key, count);
    }
    return count as tf.Scalar;
  }

  /** Frees the derived masks (and the base mask when this object made it). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const mask of this.derived.values()) mask.dispose();
    for (const count of this.counts.values()) count.dispose();
    this.derived.clear();
    this.counts.clear();
    if (this.ownsBase) this.base.dispose();
  }

  private assertAlive(caller: string): void {
    if (this.disposed) throw new Error(`${caller}: this ActiveSites was disposed`);
  }
}

/** A mask argument: an {@link ActiveSites} (cached derived masks) or a plain `[B, h, w, 1]` tensor. */
export type ActiveMask = ActiveSites | tf.Tensor4D;

/** Throws on a value other than 0 or 1; returns whether every value is 1. */
function assertBinary(values: ArrayLike<number>, shape: number[], caller: string): boolean {
  let everyOne = true;
  for (let i = 0; i < values.length; i++) {
    if (values[i] !== 0 && values[i] !== 1) {
      throw new Error(`${caller}: the mask [${shape.join(', ')}] must hold only 0 and 1, got ${values[i]} at index ${i}`);
    }
    if (values[i] === 0) everyOne = false;
  }
  return everyOne;
}

function describeDivisibility(size: number, base: number, axis: string): string | undefined {
  if (size % base === 0 || base % size === 0) return undefined;
  return `${axis} ${size} is neither a multiple nor a divisor of ${base}`;
}

/**
 * Throws unless every spatial size of `features` (`[B, H, W, ...]`, or just `[B, H, W]` when only the
 * resolution is known) is an integer multiple or divisor of the mask's.
 */
function assertDivides(maskShape: number[], features: number[], caller: string): void {
  const [, baseHeight, baseWidth] = maskShape;
  const [, height, width] = features;
  const problem = describeDivisibility(height, baseHeight, 'height') ?? describeDivisibility(width, baseWidth, 'width');
  if (problem) {
    const what = features.length === 4 ? `features [${features.join(', ')}]` : `features of size ${height}x${width}`;
    throw new Error(`${caller}: active mask [${maskShape.join(', ')}] does not divide ${what} (${problem})`);
  }
}

/** Nearest resampling of `[B, h, w, 1]` to `[B, height, width, 1]` by integer factors (checked by the caller). */
function resampleMask(base: tf.Tensor4D, height: number, width: number): tf.Tensor4D {
  const [batch, baseHeight, baseWidth] = base.shape;
  return tf.tidy(() => {
    let mask: tf.Tensor4D = base;
    // Coarser: keep the top-left site of each block (what nearest interpolation picks).
    if (height < baseHeight || width < baseWidth) {
      const stepH = height < baseHeight ? baseHeight / height : 1;
      const stepW = width < baseWidth ? baseWidth / width : 1;
      const blocks = tf.reshape(mask, [batch, baseHeight / stepH, stepH, baseWidth / stepW, stepW]);
      mask = tf.reshape(tf.slice(blocks, [0, 0, 0, 0, 0], [batch, baseHeight / stepH, 1, baseWidth / stepW, 1]), [
        batch,
        baseHeight / stepH,
        baseWidth / stepW,
        1,
      ]);
    }
    // Finer: repeat every site as a block by broadcasting (no tile: no gradient is needed, but the
    // broadcast multiply is the cheapest repeat on every backend).
    const [, currentH, currentW] = mask.shape;
    const repeatH = height / currentH;
    const repeatW = width / currentW;
    if (repeatH > 1 || repeatW > 1) {
      const expanded = tf.reshape(mask, [batch, currentH, 1, currentW, 1]);
      const ones = tf.ones([1, 1, repeatH, 1, repeatW]);
      mask = tf.reshape(tf.mul(expanded, ones), [batch, height, width, 1]);
    }
    return mask;
  });
}

/**
 * The mask at the resolution of `features` (`[B, H, W, C]`), checking batch sizes and that the resolutions
 * divide; for a plain tensor the derived mask lives in the caller's tidy scope (dispose it, or call this
 * inside `tf.tidy`), for {@link ActiveSites} it comes from the cache (do not dispose it).
 *
 * @param active `[B, h, w, 1]` or {@link ActiveSites}, 1 = active
 * @param features `[B, H, W, C]`, H and W integer multiples or divisors of h and w
 * @returns `[B, H, W, 1]`
 *
 * @example
 * const maskAtStage = activeAt(active, stageFeatures); // multiply custom ops' outputs by it
 */
export function activeAt(active: ActiveMask, features: tf.Tensor, caller = 'activeAt'): tf.Tensor4D {
  const sites = active instanceof ActiveSites ? active : undefined;
  const base = sites ? sites.base : (active as tf.Tensor4D);
  assertCompatible(base, features, caller);
  const [, height, width] = features.shape;
  if (sites) return sites.at(height, width, caller);
  if (base.shape[1] === height && base.shape[2] === width) return base;
  return resampleMask(base, height, width);
}

/**
 * What an op multiplies its output by: the mask at the resolution of `features`, or undefined when there
 * is no mask or the mask is known to be all active, so that the op is exactly the dense op (same kernels,
 * same cost). Validates the mask either way.
 */
export function maskOrDense(active: ActiveMask | undefined, features: tf.Tensor, caller: string): tf.Tensor4D | undefined {
  if (!active) return undefined;
  if (active instanceof ActiveSites && active.allActive) {
    assertCompatible(active.base, features, caller);
    return undefined;
  }
  return activeAt(active, features, caller);
}

function assertCompatible(base: tf.Tensor, features: tf.Tensor, caller: string): void {
  if (base.rank !== 4 || base.shape[3] !== 1) {
    throw new Error(`${caller}: the active mask must have shape [B, h, w, 1], got [${base.shape.join(', ')}]`);
  }
  if (features.rank !== 4) {
    throw new Error(`${caller}: features must have shape [B, H, W, C], got [${features.shape.join(', ')}]`);
  }
  const batch = features.shape[0];
  if (base.shape[0] !== batch) {
    throw new Error(
      `${caller}: active mask [${base.shape.join(', ')}] has batch ${base.shape[0]} but features [${features.shape.join(', ')}] have batch ${batch}`,
    );
  }
  assertDivides(base.shape, features.shape, caller);
}
