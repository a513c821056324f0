//! Deterministic partition testing of the sans-IO sync engine (the simulation issue).
