// tf.variableGrads with the memory of the backward pass given back as it goes.
//
// Why: tfjs-core 4.22's backward pass (engine.gradients -> backpropagateGradients) keeps every tensor the
// forward pass saved for its gradient, and the gradient of every intermediate tensor, until the whole
// backward pass ends. A SparK step at 224 then holds the forward's saved tensors plus a second copy's worth
// of gradients: the ResNet-18 step at batch 4 peaked at 3.9 GB of tensors on wasm (1.4 GB when the forward
// ended), and batch 8 did not fit wasm's 4 GB heap. Walking the tape backwards, a node's outputs have no
// consumer left once the node is processed (the tape is in execution order), so their gradients can go, and
// so can the tensors the node saved (tfjs saves a private clone per node).
import * as tf from '@tensorflow/tfjs-core';

/** A node of tfjs's gradient tape, as engine.ts records it (tfjs-core 4.22, not public API). */
interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
}

/** The engine members engine.gradients uses (tfjs-core 4.22; private in its typings). */
interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(nameOrFn: string | (() => T), fn?: () => T): T;
}

function engineInternals(): EngineInternals | undefined {
  const engine = tf.engine() as unknown as Partial<EngineInternals>;
  const usable =
    typeof engine.scopedRun === 'function' &&
    typeof engine.startTape === 'function' &&
    typeof engine.endTape === 'function' &&
    typeof engine.state?.gradientDepth === 'number';
  return usable ? (engine as EngineInternals) : undefined;
}

/**
 * The same as `tf.variableGrads(f, varList)`: the scalar `value` of `f()` and the gradient of it for each
 * trainable variable of `varList` (by the variable's engine name; a variable `f` does not reach gets
 * none, a non-trainable one `null`), with the same numbers. The difference is memory: each tensor the
 * forward pass saved for a gradient, and the gradient of each intermediate tensor, is disposed as soon as
 * the backward pass no longer needs it, instead of when it ends. Peak memory of a training step drops to
 * about the forward pass's saved tensors plus one layer's gradients.
 *
 * Nested in another gradient computation (`tf.grad` of a function that calls this) it is
 * `tf.variableGrads` itself, whose tape the outer computation needs.
 *
 * @example
 * const w = tf.variable(tf.randomNormal([3, 3, 3, 8]));
 * const { value, grads } = variableGradsReleasing(() => tf.conv2d(x, w, 1, 'same').square().mean(), [w]);
 * tf.dispose([value, ...Object.values(grads)]);
 */
export function variableGradsReleasing(f: () => tf.Scalar, varList: tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const engine = engineInternals();
  if (!engine || engine.state.gradientDepth > 0) return tf.variableGrads(f, varList);
  const xs = varList.filter((variable) => variable.trainable);
  if (xs.length === 0) {
    throw new Error(`variableGradsReleasing: expected at least one trainable variable, got ${varList.length} variables and none trainable`);
  }
  let tape: TapeNode[] | undefined;
  try {
    const value = engine.scopedRun(
      () => engine.startTape(),
      () => engine.endTape(),
      () => engine.tidy('forward', f),
    );
    tape = engine.state.activeTape ?? [];
    if (!(value instanceof tf.Tensor) || value.rank !== 0) {
      const shape = value instanceof tf.Tensor ? `[${value.shape.join(', ')}]` : typeof value;
      tf.dispose(value as tf.TensorContainer);
      throw new Error(`variableGradsReleasing: expected f() to return a scalar tensor, got ${shape}`);
    }
    const grads = engine.tidy('backward', () => backpropagateReleasing(nodesFromXsToY(tape!, xs, value), xs, value) as tf.Tensor[]) as (
      | tf.Tensor
      | undefined
    )[];
    if (!grads.some((grad) => grad !== undefined)) {
      value.dispose();
      throw new Error('variableGradsReleasing: no variable of varList reaches the value of f(); run the ops that use them inside f');
    }
    const named: tf.NamedTensorMap = {};
    xs.forEach((variable, index) => {
      if (grads[index]) named[variable.name] = grads[index];
    });
    for (const variable of varList) if (!variable.trainable) (named as Record<string, tf.Tensor | null>)[variable.name] = null;
    return { value: value as tf.Scalar, grads: named };
  } finally {
    // What engine.gradients does at gradient depth 0: the tape's saved tensors go with the tape (those
    // disposed on the way already are skipped by Tensor.dispose).
    for (const node of tape ?? engine.state.activeTape ?? []) for (const tensor of node.saved ?? []) tensor.dispose();
    engine.state.activeTape = null;
  }
}

/**
 * The backward pass of tfjs's backpropagateGradients (same gradient functions, same order, same
 * accumulation by `add`), releasing each node's outputs' gradients and saved tensors once it is done.
 * Returns the gradient of each of `xs` (undefined where none reached it).
 */
function backpropagateReleasing(tape: TapeNode[], xs: tf.Variable[], y: tf.Tensor): (tf.Tensor | undefined)[] {
  const seed = tf.onesLike(y);
  // Only tensors made in this backward pass are disposed here (ids grow); the seed is the first of them.
  const firstBackwardId = seed.id;
  const gradientOf = new Map<number, tf.Tensor>();
  // How many entries of gradientOf hold each tensor: a gradient function may pass dy through unchanged,
  // so one tensor can be the gradient of several tensors.
  const holders = new Map<tf.Tensor, number>();
  const hold = (id: number, gradient: tf.Tensor) => {
    gradientOf.set(id, gradient);
    holders.set(gradient, (holders.get(gradient) ?? 0) + 1);
  };
  const release = (id: number) => {
    const gradient = gradientOf.get(id);
    if (!gradient) return;
    gradientOf.delete(id);
    const left = (holders.get(gradient) ?? 1) - 1;
    if (left > 0) {
      holders.set(gradient, left);
      return;
    }
    holders.delete(gradient);
    if (gradient.id >= firstBackwardId && !gradient.kept) gradient.dispose();
  };
  hold(y.id, seed);
  for (let index = tape.length - 1; index >= 0; index--) {
    const node = tape[index];
    const dys = node.outputs.map((output) => gradientOf.get(output.id) ?? null);
    if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
    const inputGradients = node.gradient(dys);
    for (const inputName in node.inputs) {
      if (!(inputName in inputGradients)) {
        throw new Error(`Cannot backprop through input ${inputName}. Available gradients found: ${Object.keys(inputGradients)}.`);
      }
      const dx = tf.tidy(() => inputGradients[inputName]());
      const x = node.inputs[inputName];
      if (dx.dtype !== 'float32') {
        throw new Error(
          `Error in gradient for op ${node.kernelName}. The gradient of input ${inputName} must have 'float32' dtype, but has '${dx.dtype}'`,
        );
      }
      if (!tf.util.arraysEqual(dx.shape, x.shape)) {
        throw new Error(
          `Error in gradient for op ${node.kernelName}. The gradient of input '${inputName}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`,
        );
      }
      const current = gradientOf.get(x.id);
      if (current === undefined) {
        hold(x.id, dx);
      } else {
        const sum = tf.add(current, dx);
        release(x.id);
        // dx is no longer needed unless it is also held elsewhere (passed through from a dy).
        if (!holders.has(dx) && dx.id >= firstBackwardId && !dx.kept) dx.dispose();
        hold(x.id, sum);
      }
    }
    // Every consumer of this node's outputs came later in the tape and is done.
    for (const output of node.outputs) release(output.id);
    for (const tensor of node.saved ?? []) if (!holders.has(tensor)) tensor.dispose();
  }
  return xs.map((x) => gradientOf.get(x.id));
}

/**
 * The nodes of `tape` on a path from one of `xs` to `y`, their inputs pruned to those that depend on `xs`:
 * tfjs's getFilteredNodesXToY (not exported by tfjs-core).
 */
function nodesFromXsToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set<number>(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((input) => fromX.has(input.id))) {
      for (const output of node.outputs) fromX.add(output.id);
      nodesFromX.add(node.id);
    }
  }
  const leadsToY = new Set<number>([y.id]);
  const nodesToY = new Set<number>();
  for (let index = tape.length - 1; index >= 0; index--) {
    const node = tape[index];
    if (node.outputs.some((output) => leadsToY.has(output.id))) {
      for (const input of Object.values(node.inputs)) leadsToY.add(input.id);
      nodesToY.add(node.id);
    }
  }
  return tape
    .filter((node) => nodesFromX.has(node.id) && nodesToY.has(node.id))
    .map((node) => ({
      ...node,
      inputs: Object.fromEntries(Object.entries(node.inputs).filter(([, input]) => fromX.has(input.id))),
    }));
}
