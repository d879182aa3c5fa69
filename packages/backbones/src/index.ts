// Public API of @sparkmim/backbones: see README.md.
export {};
