// Public API of @sparkmim/trainer: see README.md.
export {};
