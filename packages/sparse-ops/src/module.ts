import * as tf from '@tensorflow/tfjs-core';

/**
 * How a weight is laid out here relative to PyTorch, so that checkpoints convert without knowing the
 * layer: `conv2d` ours `[kH, kW, I, O]` ↔ torch `(O, I, kH, kW)`; `conv2dTranspose` ours `[kH, kW, O, I]` ↔
 * torch `(I, O, kH, kW)`; `linear` ours `[in, out]` ↔ torch `(out, in)`; `token` ours `[C]` ↔ torch
 * `(1, C, 1, 1)`; `same` identical.
 */
export type TorchLayout = 'conv2d' | 'conv2dTranspose' | 'linear' | 'token' | 'same';

/** A named tensor slot of a module: a trainable parameter or a buffer (running statistics). */
export interface NamedVariable {
  name: string;
  variable: tf.Variable;
  layout: TorchLayout;
}

/**
 * A minimal module tree in the spirit of `torch.nn.Module`: parameters and buffers registered in order,
 * children by name, a training flag, and `dispose()` for everything it owns. Names and their order follow
 * PyTorch's `named_parameters()` / `state_dict()` (own entries first, then children in registration
 * order), so a state dict maps key by key onto the official checkpoints.
 *
 * @example
 * class Scale extends Module {
 *   readonly factor = this.registerParameter('weight', tf.ones([4]));
 * }
 */
export class Module {
  training = true;
  private readonly parameterSlots = new Map<string, NamedVariable>();
  private readonly bufferSlots = new Map<string, NamedVariable>();
  private readonly children = new Map<string, Module>();

  /** Registers a trainable parameter (takes ownership of `initial`). */
  protected registerParameter(name: string, initial: tf.Tensor, layout: TorchLayout = 'same'): tf.Variable {
    const variable = tf.variable(initial, true);
    initial.dispose();
    this.parameterSlots.set(name, { name, variable, layout });
    return variable;
  }

  /** Registers a non-trainable buffer such as a running mean (takes ownership of `initial`). */
  protected registerBuffer(name: string, initial: tf.Tensor): tf.Variable {
    const variable = tf.variable(initial, false);
    initial.dispose();
    this.bufferSlots.set(name, { name, variable, layout: 'same' });
    return variable;
  }

  /** Registers a child module under `name` (PyTorch's attribute name or list index). */
  protected registerModule<T extends Module>(name: string, child: T): T {
    this.children.set(name, child);
    return child;
  }

  /** The child modules, in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.children.entries()];
  }

  /** Every trainable parameter with its dotted name, in PyTorch's `named_parameters()` order. */
  namedParameters(prefix = ''): NamedVariable[] {
    return this.collect(prefix, (module) => module.parameterSlots);
  }

  /** Every buffer (running statistics, counters) with its dotted name. */
  namedBuffers(prefix = ''): NamedVariable[] {
    return this.collect(prefix, (module) => module.bufferSlots);
  }

  /** Parameters then buffers per module, recursively: PyTorch's `state_dict()` order. */
  stateEntries(prefix = ''): NamedVariable[] {
    const entries: NamedVariable[] = [];
    for (const slot of this.parameterSlots.values()) entries.push({ ...slot, name: prefix + slot.name });
    for (const slot of this.bufferSlots.values()) entries.push({ ...slot, name: prefix + slot.name });
    for (const [name, child] of this.children) entries.push(...child.stateEntries(`${prefix}${name}.`));
    return entries;
  }

  /** Sets training (batch statistics, drop path) or evaluation mode, recursively. Returns this. */
  train(training = true): this {
    this.training = training;
    for (const child of this.children.values()) child.train(training);
    return this;
  }

  /** Evaluation mode: running statistics, no drop path. Returns this. */
  eval(): this {
    return this.train(false);
  }

  /** Frees every parameter and buffer of this module and its children. */
  dispose(): void {
    for (const slot of this.parameterSlots.values()) slot.variable.dispose();
    for (const slot of this.bufferSlots.values()) slot.variable.dispose();
    for (const child of this.children.values()) child.dispose();
    this.parameterSlots.clear();
    this.bufferSlots.clear();
    this.children.clear();
  }

  private collect(prefix: string, slotsOf: (module: Module) => Map<string, NamedVariable>): NamedVariable[] {
    const result: NamedVariable[] = [];
    for (const slot of slotsOf(this).values()) result.push({ ...slot, name: prefix + slot.name });
    for (const [name, child] of this.children) result.push(...child.collect(`${prefix}${name}.`, slotsOf));
    return result;
  }
}

/**
 * Anything that records tensor shapes by official name (PyTorch layout): a state dict read from a file, or
 * just its shapes. Architectures are inferred from it (`backboneConfigFromState`, `lightDecoderConfigFromState`).
 */
export type StateShapes = ReadonlyMap<string, { readonly shape: readonly number[] }>;

/** Makes an initial tensor of the given shape. */
export type Initializer = (shape: number[]) => tf.Tensor;

/**
 * An ordered list of child modules named "0", "1", … (PyTorch's `nn.ModuleList` / `nn.Sequential`
 * naming), so that state-dict keys such as `layer1.0.conv1.weight` come out right.
 *
 * @example
 * const blocks = new ModuleList([blockA, blockB]);
 * for (const block of blocks.items) x = block.apply(x);
 */
export class ModuleList<T extends Module = Module> extends Module {
  readonly items: T[];

  constructor(items: T[] = []) {
    super();
    this.items = [];
    for (const item of items) this.push(item);
  }

  /** Appends `item` under the next index. */
  push(item: T): T {
    this.registerModule(String(this.items.length), item);
    this.items.push(item);
    return item;
  }

  get length(): number {
    return this.items.length;
  }
}
