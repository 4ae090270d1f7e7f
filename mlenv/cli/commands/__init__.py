"""The commands of `mlenv`, one module per area; each command parses its options,
calls one function of the public API and renders what it returns."""
