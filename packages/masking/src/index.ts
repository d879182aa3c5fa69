// Public API of @sparkmim/masking: see README.md.
export {};
