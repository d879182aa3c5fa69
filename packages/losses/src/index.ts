// Public API of @sparkmim/losses: see README.md.
export {};
