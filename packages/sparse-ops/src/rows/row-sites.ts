import * as tf from '@tensorflow/tfjs-core';
import { ActiveSites, type ActiveMask } from '../active-sites';
import { pair, resolveSides, type Padding2d } from '../padding';

/**
 * Which rows a gather reads and, for its gradient, which gathered slots read each source row.
 *
 * The gather reads `[N + 2, C]`: the `N` source rows, then a zero row (index `N`, an inactive site inside
 * the map) and a fill row (index `N + 1`, a site outside the map: zero for convolutions and average
 * pooling, -infinity for max pooling, as PyTorch pads them).
 */
export interface GatherPlan {
  /** int32 `[M]`, values in `[0, sourceRows + 1]`. */
  readonly index: tf.Tensor1D;
  /**
   * int32 `[fanIn * sourceRows]`, slot major: entry `k * sourceRows + r` is the `k`-th gathered position
   * that reads source row `r`, or `M` (a zero row appended to the incoming gradient) when fewer read it.
   * The gradient is then a gather and a sum of `fanIn` contiguous slices instead of tfjs's
   * UnsortedSegmentSum, which the cpu backend runs as one full pass per segment (quadratic in the rows).
   */
  readonly inverse: tf.Tensor1D;
  /** The most gathered positions that read one source row (at most the window size). */
  readonly fanIn: number;
  readonly sourceRows: number;
  readonly gatheredRows: number;
}

/**
 * The active sites of one resolution numbered as rows: row `r` is the `r`-th active site in
 * `[B, H, W]` order (batch, then row, then column), so rows of one image are contiguous.
 */
export interface RowLayout {
  readonly batchSize: number;
  readonly height: number;
  readonly width: number;
  /** Number of active sites, `N`. */
  readonly rowCount: number;
  /** `[B * H * W]`: the row of each site, -1 where the site is inactive. */
  readonly rowOfSite: Int32Array;
  /** `[N]`: the site (`(b * H + y) * W + x`) of each row. */
  readonly siteOfRow: Int32Array;
  /** Gathers the active sites of a flattened `[B * H * W, C]` map into `[N, C]`. */
  readonly toRows: GatherPlan;
  /** Gathers rows back into a flattened `[B * H * W, C]` map, the zero row at inactive sites. */
  readonly toSites: GatherPlan;
}

/** The rows that each output row of a windowed op (convolution, pooling) reads, tap by tap. */
export interface NeighbourTable {
  readonly input: RowLayout;
  readonly output: RowLayout;
  /** `[kH, kW]`. */
  readonly windowSize: [number, number];
  /** `kH * kW`. */
  readonly taps: number;
  /** `[N_out * taps]` (output row major, then `ky`, then `kx`), reading `[N_in + 2, C]`. */
  readonly plan: GatherPlan;
  /**
   * int32 `[N_in * taps]`: entry `r * taps + t` is the output row that reads input row `r` through tap `t`,
   * or `N_out` (a zero row) when none does. At most one does, for any stride: output `o` reads input
   * `o * stride - pad + t * dilation` through tap `t`. A convolution's input gradient is then a gather
   * of the output gradient by this table and one plain matmul, like its forward pass.
   */
  readonly transposed: tf.Tensor1D;
  /** float32 `[N_out, 1]`: how many taps of each output row fall inside the map (average pooling). */
  readonly inBoundsCount: tf.Tensor2D;
}

/** The geometry of a windowed op, as {@link RowSites.neighbours} takes it. */
export interface WindowOptions {
  /** `[kH, kW]` or one number. */
  windowSize: number | [number, number];
  /** Default 1. */
  strides?: number | [number, number];
  /** PyTorch style (see {@link Padding2d}). Default 0. */
  pad?: Padding2d;
  /** Default 1. */
  dilations?: number | [number, number];
}

/**
 * The output size of a windowed op on rows at `inputSize` (`[H, W]`), as PyTorch computes it.
 *
 * @example
 * windowOutputSize([56, 56], { windowSize: 3, strides: 2, pad: 1 }); // [28, 28]
 */
export function windowOutputSize(inputSize: [number, number], options: WindowOptions): [number, number] {
  const [kernelH, kernelW] = pair(options.windowSize);
  const [strideH, strideW] = pair(options.strides ?? 1);
  const [dilationH, dilationW] = pair(options.dilations ?? 1);
  const [top, bottom, left, right] = resolveSides(options.pad ?? 0, [1, ...inputSize, 1], [kernelH, kernelW], [strideH, strideW]);
  const extentH = (kernelH - 1) * dilationH + 1;
  const extentW = (kernelW - 1) * dilationW + 1;
  return [Math.floor((inputSize[0] + top + bottom - extentH) / strideH) + 1, Math.floor((inputSize[1] + left + right - extentW) / strideW) + 1];
}

/**
 * The row view of an active mask (SparK's visible sites stored as rows `[N, C]`, like a point cloud):
 * per resolution a {@link RowLayout}, per windowed op a {@link NeighbourTable}, each built once on the CPU
 * from the mask values and cached, so every layer at a scale shares them. Masks at other resolutions come
 * from the base mask exactly as {@link ActiveSites.at} derives them (nearest resampling by integer factors),
 * so the row ops compute what the masked-dense ops compute, on the active sites only.
 *
 * Owns the index tensors it builds: call {@link RowSites.dispose} when done.
 *
 * @example
 * const sites = await RowSites.fromMask(active);        // active: [B, h, w, 1], 1 = visible
 * const rows = toRows(x, sites);                        // [N, C] at x's resolution
 * const y = rowConv2d(rows, filter, { sites, inputSize: [56, 56], pad: 1 });
 * const dense = fromRows(y, sites, [56, 56]);            // [B, 56, 56, C], zero at masked sites
 * sites.dispose();
 */
export class RowSites {
  private readonly layouts = new Map<string, RowLayout>();
  private readonly tables = new Map<string, NeighbourTable>();
  private disposed = false;

  private constructor(
    private readonly baseValues: Uint8Array,
    readonly batchSize: number,
    readonly height: number,
    readonly width: number,
  ) {}

  /**
   * Reads a mask (`[B, h, w, 1]`, or an {@link ActiveSites}'s base) once; values other than 0 and 1 are
   * rejected. The mask stays owned by the caller.
   */
  static async fromMask(active: ActiveMask): Promise<RowSites> {
    const mask = active instanceof ActiveSites ? active.base : active;
    if (mask.rank !== 4 || mask.shape[3] !== 1) {
      throw new Error(`RowSites.fromMask: the mask must have shape [B, h, w, 1], got [${mask.shape.join(', ')}]`);
    }
    const [batch, height, width] = mask.shape;
    return RowSites.fromArray(await mask.data(), [batch, height, width]);
  }

  /**
   * From JS values, `[B, h, w]` in row-major order, 1 = active.
   *
   * @example
   * const sites = RowSites.fromArray([1, 0, 0, 1], [1, 2, 2]);
   */
  static fromArray(values: ArrayLike<number>, [batch, height, width]: [number, number, number]): RowSites {
    if (values.length !== batch * height * width) {
      throw new Error(`RowSites.fromArray: expected ${batch * height * width} values for [${batch}, ${height}, ${width}], got ${values.length}`);
    }
    const base = new Uint8Array(values.length);
    for (let i = 0; i < values.length; i++) {
      if (values[i] !== 0 && values[i] !== 1) {
        throw new Error(`RowSites: the mask [${batch}, ${height}, ${width}, 1] must hold only 0 and 1, got ${values[i]} at index ${i}`);
      }
      base[i] = values[i];
    }
    return new RowSites(base, batch, height, width);
  }

  /** The row layout at `height x width` (cached; owned by this object). */
  layoutAt(height: number, width: number, caller = 'RowSites.layoutAt'): RowLayout {
    this.assertAlive(caller);
    const key = `${height}x${width}`;
    let layout = this.layouts.get(key);
    if (!layout) {
      layout = buildLayout(this.maskAt(height, width, caller), this.batchSize, height, width);
      this.layouts.set(key, layout);
    }
    return layout;
  }

  /** Number of active sites (rows) at `height x width`. */
  rowCountAt(height: number, width: number): number {
    return this.layoutAt(height, width, 'RowSites.rowCountAt').rowCount;
  }

  /**
   * The neighbour table of a windowed op on rows at `inputSize` (cached per geometry; owned by this
   * object). Output rows are the active sites at the output resolution.
   */
  neighbours(inputSize: [number, number], options: WindowOptions, caller = 'RowSites.neighbours'): NeighbourTable {
    this.assertAlive(caller);
    const windowSize = pair(options.windowSize);
    const strides = pair(options.strides ?? 1);
    const dilations = pair(options.dilations ?? 1);
    const sides = resolveSides(options.pad ?? 0, [1, ...inputSize, 1], windowSize, strides);
    const key = [inputSize, windowSize, strides, dilations, sides].map((part) => part.join(',')).join('|');
    let table = this.tables.get(key);
    if (!table) {
      const [outH, outW] = windowOutputSize(inputSize, options);
      if (outH < 1 || outW < 1) {
        throw new Error(`${caller}: a ${windowSize.join('x')} window leaves no output on a ${inputSize.join('x')} input`);
      }
      const input = this.layoutAt(inputSize[0], inputSize[1], caller);
      const output = this.layoutAt(outH, outW, caller);
      table = buildNeighbourTable(input, output, windowSize, strides, dilations, sides);
      this.tables.set(key, table);
    }
    return table;
  }

  /** Frees every index tensor built so far. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const layout of this.layouts.values()) disposePlans([layout.toRows, layout.toSites]);
    for (const table of this.tables.values()) {
      disposePlans([table.plan]);
      table.transposed.dispose();
      table.inBoundsCount.dispose();
    }
    this.layouts.clear();
    this.tables.clear();
  }

  /** The 0/1 mask at `height x width`, derived as ActiveSites.at derives it (top-left site, then repeat). */
  private maskAt(height: number, width: number, caller: string): Uint8Array {
    const problem = divisibility(height, this.height, 'height') ?? divisibility(width, this.width, 'width');
    if (problem) {
      throw new Error(
        `${caller}: active mask [${this.batchSize}, ${this.height}, ${this.width}, 1] does not divide features of size ${height}x${width} (${problem})`,
      );
    }
    const stepH = height < this.height ? this.height / height : 1;
    const stepW = width < this.width ? this.width / width : 1;
    const repeatH = height > this.height ? height / this.height : 1;
    const repeatW = width > this.width ? width / this.width : 1;
    const mask = new Uint8Array(this.batchSize * height * width);
    for (let b = 0; b < this.batchSize; b++) {
      for (let y = 0; y < height; y++) {
        const baseY = Math.floor(y / repeatH) * stepH;
        for (let x = 0; x < width; x++) {
          const baseX = Math.floor(x / repeatW) * stepW;
          mask[(b * height + y) * width + x] = this.baseValues[(b * this.height + baseY) * this.width + baseX];
        }
      }
    }
    return mask;
  }

  private assertAlive(caller: string): void {
    if (this.disposed) throw new Error(`${caller}: this RowSites was disposed`);
  }
}

function divisibility(size: number, base: number, axis: string): string | undefined {
  if (size % base === 0 || base % size === 0) return undefined;
  return `${axis} ${size} is neither a multiple nor a divisor of ${base}`;
}

function disposePlans(plans: GatherPlan[]): void {
  for (const plan of plans) {
    plan.index.dispose();
    plan.inverse.dispose();
  }
}

/**
 * The plan of a gather reading `index` from `sourceRows` rows (plus the two sentinel rows), with its
 * inverse table for the gradient.
 */
function makePlan(index: Int32Array, sourceRows: number): GatherPlan {
  const readers = new Int32Array(sourceRows);
  for (let i = 0; i < index.length; i++) if (index[i] < sourceRows) readers[index[i]]++;
  let fanIn = 1;
  for (let r = 0; r < sourceRows; r++) fanIn = Math.max(fanIn, readers[r]);
  const inverse = new Int32Array(sourceRows * fanIn).fill(index.length);
  readers.fill(0);
  for (let i = 0; i < index.length; i++) {
    const row = index[i];
    if (row < sourceRows) inverse[readers[row]++ * sourceRows + row] = i;
  }
  return {
    index: tf.keep(tf.tensor1d(index, 'int32')),
    inverse: tf.keep(tf.tensor1d(inverse, 'int32')),
    fanIn,
    sourceRows,
    gatheredRows: index.length,
  };
}

function buildLayout(mask: Uint8Array, batchSize: number, height: number, width: number): RowLayout {
  const rowOfSite = new Int32Array(mask.length).fill(-1);
  let rowCount = 0;
  for (let site = 0; site < mask.length; site++) if (mask[site] === 1) rowOfSite[site] = rowCount++;
  const siteOfRow = new Int32Array(rowCount);
  for (let site = 0; site < mask.length; site++) if (rowOfSite[site] >= 0) siteOfRow[rowOfSite[site]] = site;
  // Inactive sites read the zero row (index rowCount) when rows go back to a map.
  const siteToRow = rowOfSite.map((row) => (row < 0 ? rowCount : row));
  return {
    batchSize,
    height,
    width,
    rowCount,
    rowOfSite,
    siteOfRow,
    toRows: makePlan(siteOfRow, mask.length),
    toSites: makePlan(siteToRow, rowCount),
  };
}

function buildNeighbourTable(
  input: RowLayout,
  output: RowLayout,
  [kernelH, kernelW]: [number, number],
  [strideH, strideW]: [number, number],
  [dilationH, dilationW]: [number, number],
  [top, , left]: [number, number, number, number],
): NeighbourTable {
  const taps = kernelH * kernelW;
  const zeroRow = input.rowCount;
  const fillRow = input.rowCount + 1;
  const index = new Int32Array(output.rowCount * taps);
  const inBounds = new Float32Array(output.rowCount);
  const outPlane = output.height * output.width;
  for (let row = 0; row < output.rowCount; row++) {
    const site = output.siteOfRow[row];
    const b = Math.floor(site / outPlane);
    const outY = Math.floor((site % outPlane) / output.width);
    const outX = site % output.width;
    for (let ky = 0; ky < kernelH; ky++) {
      const y = outY * strideH - top + ky * dilationH;
      for (let kx = 0; kx < kernelW; kx++) {
        const x = outX * strideW - left + kx * dilationW;
        let source = fillRow;
        if (y >= 0 && y < input.height && x >= 0 && x < input.width) {
          const inputRow = input.rowOfSite[(b * input.height + y) * input.width + x];
          source = inputRow < 0 ? zeroRow : inputRow;
          inBounds[row]++;
        }
        index[row * taps + ky * kernelW + kx] = source;
      }
    }
  }
  const transposed = new Int32Array(input.rowCount * taps).fill(output.rowCount);
  for (let position = 0; position < index.length; position++) {
    const source = index[position];
    if (source < input.rowCount) transposed[source * taps + (position % taps)] = Math.floor(position / taps);
  }
  return {
    input,
    output,
    windowSize: [kernelH, kernelW],
    taps,
    plan: makePlan(index, input.rowCount),
    transposed: tf.keep(tf.tensor1d(transposed, 'int32')),
    inBoundsCount: tf.keep(tf.tensor2d(inBounds, [output.rowCount, 1])),
  };
}
