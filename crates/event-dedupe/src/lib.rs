//! Decides which polled events are new: a dedupe-tracker trait with bounded memory, an in-memory store and a crash-safe file store
