// Public API of @sparkmim/decoder: see README.md.
export {};
