//! The equinix-receiver binary (the pipeline comes with issue 6).

fn main() {}
