"""Training, diagnostics and entry points: cells x tasks -> runs -> results."""
