import * as tf from '@tensorflow/tfjs-core';
import { formatShape } from '@sparkmim/masking';
import type { NamedVariable as ModuleVariable } from '@sparkmim/sparse-ops';

/**
 * A parameter and the name it has in checkpoints (official PyTorch names, e.g. `densify_projs.1.weight`):
 * a module's `NamedVariable` (@sparkmim/sparse-ops) without its layout, which optimisers do not need.
 */
export type NamedVariable = Pick<ModuleVariable, 'name' | 'variable'>;

/** A parameter group as given to an optimiser (torch's `param_groups` entries). */
export interface ParamGroupInit {
  /** The group's name, e.g. `'decay'` or `'no_decay'` (see {@link weightDecayGroups}). */
  name: string;
  variables: readonly NamedVariable[];
  /** Learning rate of this group; defaults to the optimiser's `lr`. */
  lr?: number;
  /** Weight decay of this group; defaults to the optimiser's `weightDecay`. */
  weightDecay?: number;
  /** Multiplies the scheduled learning rate in {@link applyLrWd} (torch `lr_scale`); default 1. */
  lrScale?: number;
  /** Multiplies the scheduled weight decay in {@link applyLrWd} (torch `weight_decay_scale`); default 1. */
  weightDecayScale?: number;
}

/** A parameter group inside an optimiser: `lr` and `weightDecay` may be changed before every step. */
export interface ParamGroup {
  readonly name: string;
  readonly variables: readonly NamedVariable[];
  lr: number;
  weightDecay: number;
  readonly lrScale: number;
  readonly weightDecayScale: number;
}

/** Gradients by parameter name; a parameter without a gradient is skipped, as torch skips `grad is None`. */
export type NamedGradients = ReadonlyMap<string, tf.Tensor> | Readonly<Record<string, tf.Tensor>>;

export interface StepOptions {
  /**
   * Use this global gradient norm instead of computing it from `grads` (for example when the gradients
   * of one step are applied in parts, or to replay a step whose norm is known). It decides the clipping.
   */
  globalGradNorm?: number;
}

export interface StepResult {
  /** L2 norm over all gradients given, before any clipping (torch's `global_grad_norm` / `clip_grad_norm_` result). */
  globalGradNorm: number;
}

/** Named tensors in and out of an optimiser's `getState()` / `setState()`. */
export type NamedTensors = ReadonlyMap<string, tf.Tensor> | Readonly<Record<string, tf.Tensor>>;

/** What schedules and training loops need from any optimiser here. */
export interface Optimizer {
  readonly paramGroups: readonly ParamGroup[];
  step(grads: NamedGradients, options?: StepOptions): Promise<StepResult>;
  getState(): Map<string, tf.Tensor>;
  setState(state: NamedTensors): Promise<void>;
  dispose(): void;
}

export interface BaseOptimizerOptions {
  lr: number;
  weightDecay: number;
}

function entriesOf<T>(map: ReadonlyMap<string, T> | Readonly<Record<string, T>>): [string, T][] {
  return map instanceof Map ? [...map.entries()] : Object.entries(map as Record<string, T>);
}

function listNames(names: readonly string[]): string {
  return names.length <= 5 ? names.join(', ') : `${names.slice(0, 5).join(', ')}, ... (${names.length} in all)`;
}

/**
 * Shared bookkeeping of the optimisers: parameter groups, per-parameter slot variables (moments, momentum
 * buffers) created at a parameter's first gradient as torch does, gradient checks, state import/export.
 */
export abstract class NamedOptimizerBase implements Optimizer {
  readonly paramGroups: ParamGroup[];
  /** Slot variables by slot name (`exp_avg`, ...) and then parameter name. */
  protected readonly slots = new Map<string, Map<string, tf.Variable>>();
  private readonly variablesByName = new Map<string, tf.Variable>();
  private disposed = false;

  protected constructor(
    private readonly className: string,
    groups: readonly ParamGroupInit[],
    defaults: BaseOptimizerOptions,
    private readonly slotNames: readonly string[],
  ) {
    if (!Array.isArray(groups)) throw new Error(`${className}: expected an array of parameter groups, got ${typeof groups}`);
    this.paramGroups = groups.map((group, index) => {
      if (!group || !Array.isArray(group.variables)) {
        throw new Error(`${className}: parameter group ${index} has no 'variables' array`);
      }
      for (const { name, variable } of group.variables) {
        if (typeof name !== 'string' || !(variable instanceof tf.Variable)) {
          throw new Error(
            `${className}: group '${group.name}' entries must be {name: string, variable: tf.Variable}, got name ${JSON.stringify(name)}`,
          );
        }
        if (this.variablesByName.has(name)) throw new Error(`${className}: parameter '${name}' appears twice in the parameter groups`);
        if (variable.dtype !== 'float32') throw new Error(`${className}: parameter '${name}' is ${variable.dtype}, expected float32`);
        this.variablesByName.set(name, variable);
      }
      return {
        name: group.name,
        variables: [...group.variables],
        lr: group.lr ?? defaults.lr,
        weightDecay: group.weightDecay ?? defaults.weightDecay,
        lrScale: group.lrScale ?? 1,
        weightDecayScale: group.weightDecayScale ?? 1,
      };
    });
    if (this.variablesByName.size === 0) throw new Error(`${className}: got an empty parameter list`);
    for (const slot of slotNames) this.slots.set(slot, new Map());
  }

  abstract step(grads: NamedGradients, options?: StepOptions): Promise<StepResult>;

  /** Checks `grads` against the parameters and returns them as a map. */
  protected checkGradients(grads: NamedGradients): Map<string, tf.Tensor> {
    if (this.disposed) throw new Error(`${this.className}.step: the optimiser was disposed`);
    const checked = new Map<string, tf.Tensor>();
    for (const [name, grad] of entriesOf(grads)) {
      const variable = this.variablesByName.get(name);
      if (!variable) {
        throw new Error(
          `${this.className}.step: got a gradient for '${name}', which is not a parameter of this optimiser (expected one of ${listNames([...this.variablesByName.keys()])})`,
        );
      }
      if (!(grad instanceof tf.Tensor)) throw new Error(`${this.className}.step: the gradient for '${name}' is not a tf.Tensor`);
      if (!tf.util.arraysEqual(grad.shape, variable.shape)) {
        throw new Error(
          `${this.className}.step: the gradient for '${name}' has shape ${formatShape(grad.shape)}, expected ${formatShape(variable.shape)} (the parameter's shape)`,
        );
      }
      checked.set(name, grad);
    }
    return checked;
  }

  /** sqrt(sum over every gradient of sum(g^2)), as a float32 scalar (or the given norm). */
  protected globalNorm(grads: ReadonlyMap<string, tf.Tensor>, given?: number): tf.Scalar {
    if (given !== undefined) {
      if (!Number.isFinite(given) || given < 0) throw new Error(`${this.className}.step: globalGradNorm is ${given}, expected a finite number >= 0`);
      return tf.scalar(given);
    }
    return tf.tidy(() => {
      // Summed one by one, in parameter order, as torch's `global_grad_norm.add_(...)`. (Not tf.addN: on
      // webgpu, tfjs 4.22's AddN returns wrong sums from 8 inputs on, past the storage-buffer limit.)
      let squares: tf.Tensor = tf.scalar(0);
      for (const grad of grads.values()) squares = tf.add(squares, tf.sum(tf.square(grad)));
      return tf.sqrt(squares) as tf.Scalar;
    });
  }

  /** The slot variable `slot` of `paramName`, created as zeros like the parameter on first use. */
  protected slot(slot: string, paramName: string): tf.Variable {
    const bySlot = this.slots.get(slot)!;
    let variable = bySlot.get(paramName);
    if (!variable) {
      const zeros = tf.zerosLike(this.variablesByName.get(paramName)!);
      variable = tf.variable(zeros, false);
      zeros.dispose();
      bySlot.set(paramName, variable);
    }
    return variable;
  }

  protected hasSlots(paramName: string): boolean {
    return this.slots.get(this.slotNames[0])!.has(paramName);
  }

  /** Scalars besides the slots (e.g. `step`) for getState; subclasses override. */
  protected scalarState(): Map<string, number> {
    return new Map();
  }

  /**
   * Checks and takes the scalars read by setState (the keys {@link isScalarKey} accepts); `paramsWithSlots`
   * names the parameters the new state has slots for. Throws to reject the state before anything changes.
   */
  protected abstract applyScalarState(scalars: Map<string, number>, paramsWithSlots: ReadonlySet<string>): void;

  /** Keys of scalar state this optimiser accepts for the given parameters (to check setState input). */
  protected abstract isScalarKey(key: string): boolean;

  /**
   * The optimiser's state as named tensors (copies: the caller disposes them): `<slot>.<parameter>` for
   * every slot (e.g. `exp_avg.densify_projs.1.weight`) and int32 scalars such as `step`. Save them with
   * {@link safetensorsEntriesFromTensors} and {@link encodeSafetensors}.
   *
   * @example
   * const state = optimizer.getState();
   * const bytes = encodeSafetensors(await safetensorsEntriesFromTensors(state));
   * tf.dispose([...state.values()]);
   */
  getState(): Map<string, tf.Tensor> {
    if (this.disposed) throw new Error(`${this.className}.getState: the optimiser was disposed`);
    const state = new Map<string, tf.Tensor>();
    for (const [key, value] of this.scalarState()) state.set(key, tf.scalar(value, 'int32'));
    for (const [slot, bySlot] of this.slots) {
      for (const [paramName, variable] of bySlot) state.set(`${slot}.${paramName}`, tf.clone(variable));
    }
    return state;
  }

  /**
   * Replaces the optimiser's state with `state` as {@link getState} made it (the tensors are copied; the
   * caller keeps ownership). Everything is checked before anything changes.
   *
   * @example
   * const state = tensorsFromSafetensors(decodeSafetensors(bytes).tensors);
   * await optimizer.setState(state);
   * tf.dispose([...state.values()]);
   */
  async setState(state: NamedTensors): Promise<void> {
    if (this.disposed) throw new Error(`${this.className}.setState: the optimiser was disposed`);
    const slotValues = new Map<string, Map<string, tf.Tensor>>(this.slotNames.map((slot) => [slot, new Map()]));
    const scalarTensors = new Map<string, tf.Tensor>();
    for (const [key, tensor] of entriesOf(state)) {
      if (this.isScalarKey(key)) {
        if (tensor.size !== 1) throw new Error(`${this.className}.setState: '${key}' has shape ${formatShape(tensor.shape)}, expected a scalar`);
        scalarTensors.set(key, tensor);
        continue;
      }
      const slot = this.slotNames.find((name) => key.startsWith(`${name}.`));
      const paramName = slot === undefined ? undefined : key.slice(slot.length + 1);
      const variable = paramName === undefined ? undefined : this.variablesByName.get(paramName);
      if (slot === undefined || paramName === undefined || !variable) {
        throw new Error(
          `${this.className}.setState: unexpected entry '${key}': expected '<slot>.<parameter>' with slot one of ` +
            `${this.slotNames.join(', ')} and a parameter of this optimiser, or a scalar such as 'step'`,
        );
      }
      if (!tf.util.arraysEqual(tensor.shape, variable.shape)) {
        throw new Error(
          `${this.className}.setState: '${key}' has shape ${formatShape(tensor.shape)}, expected ${formatShape(variable.shape)} (the parameter's shape)`,
        );
      }
      slotValues.get(slot)!.set(paramName, tensor);
    }
    const [firstSlot, ...otherSlots] = this.slotNames;
    for (const slot of otherSlots) {
      for (const paramName of new Set([...slotValues.get(firstSlot)!.keys(), ...slotValues.get(slot)!.keys()])) {
        if (!slotValues.get(firstSlot)!.has(paramName) || !slotValues.get(slot)!.has(paramName)) {
          throw new Error(
            `${this.className}.setState: '${paramName}' has ${slotValues.get(slot)!.has(paramName) ? slot : firstSlot} but not ${slotValues.get(slot)!.has(paramName) ? firstSlot : slot}; expected both or neither`,
          );
        }
      }
    }
    const scalars = new Map<string, number>();
    for (const [key, tensor] of scalarTensors) scalars.set(key, (await tensor.data())[0]);
    this.applyScalarState(scalars, new Set(slotValues.get(firstSlot)!.keys()));
    for (const [slot, values] of slotValues) {
      const bySlot = this.slots.get(slot)!;
      for (const variable of bySlot.values()) variable.dispose();
      bySlot.clear();
      for (const [paramName, tensor] of values) {
        const copy = tensor.dtype === 'float32' ? tf.clone(tensor) : tf.cast(tensor, 'float32');
        bySlot.set(paramName, tf.variable(copy, false));
        copy.dispose();
      }
    }
  }

  /** Frees the optimiser's state (not the parameters). */
  dispose(): void {
    for (const bySlot of this.slots.values()) {
      for (const variable of bySlot.values()) variable.dispose();
      bySlot.clear();
    }
    this.disposed = true;
  }
}
