// Public API of @sparkmim/sparse-ops: see README.md.
export {};
