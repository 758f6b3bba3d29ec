//! Turns Equinix Metal events into CloudEvents: a pure, deterministic mapper with Direktiv-compatible source and extensions
