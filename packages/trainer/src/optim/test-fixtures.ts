// Shared by the optimiser tests: small named parameters with deterministic values.
import * as tf from '@tensorflow/tfjs-core';

export const SHAPES: Record<string, number[]> = {
  'conv.weight': [4, 3, 2, 2],
  'conv.bias': [4],
  'norm.weight': [4],
  'proj.weight': [2, 4],
};

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Deterministic pseudo-random values in (-scale, scale) (no Math.random: the same numbers on every run). */
export function values(count: number, seed: number, scale = 1): number[] {
  let state = seed >>> 0;
  return Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return ((state / 2 ** 32) * 2 - 1) * scale;
  });
}

export function makeParams(): Map<string, number[]> {
  return new Map(Object.entries(SHAPES).map(([name, shape], index) => [name, values(sizeOf(shape), 11 + index)]));
}

/** Gradients for every parameter of {@link SHAPES} at `step`, as plain numbers. */
export function gradValuesAt(step: number, scale = 1): Map<string, number[]> {
  return new Map(Object.entries(SHAPES).map(([name, shape], index) => [name, values(sizeOf(shape), 100 * step + index, scale)]));
}

export function tensorsOf(valuesByName: Map<string, number[]>): Map<string, tf.Tensor> {
  return new Map([...valuesByName].map(([name, data]) => [name, tf.tensor(data, SHAPES[name])]));
}

/** A variable holding `data` (tidy frees the temporary tensor; variables outlive tidy). */
export function variableOf(data: ArrayLike<number>, shape: number[]): tf.Variable {
  return tf.tidy(() => tf.variable(tf.tensor(Array.from(data), shape)));
}

export function variablesFor(params: Map<string, number[]>): Map<string, tf.Variable> {
  return new Map([...params].map(([name, data]) => [name, variableOf(data, SHAPES[name])]));
}

export function disposeAll(tensors: Map<string, tf.Tensor>): void {
  for (const tensor of tensors.values()) tensor.dispose();
}

export function l2(numbers: readonly number[]): number {
  return Math.sqrt(numbers.reduce((sum, v) => sum + v * v, 0));
}
