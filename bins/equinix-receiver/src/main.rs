//! The equinix-receiver binary: reads the config, then runs the pipeline.

mod app;
mod settings;

fn main() {}
