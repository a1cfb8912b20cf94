//! Writes the seed corpus of every fuzz target, one file per input, into
//! `fuzz/corpus/<target>/` (or into the folder given as the first argument), where
//! `cargo fuzz run <target>` starts from. Other files there are left alone.
//!
//!   cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds

use std::path::PathBuf;

#[path = "../seeds.rs"]
mod seeds;

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let frames = seeds::frame_sequences();
    let names: Vec<Vec<u8>> = seeds::NAMES.iter().map(|s| s.as_bytes().to_vec()).collect();
    let texts: Vec<Vec<u8>> = seeds::TEXTS.iter().map(|s| s.as_bytes().to_vec()).collect();
    let manifests = seeds::manifests();
    for (target, inputs) in [
        ("decoder", &frames),
        ("manifest", &manifests),
        ("receiver", &frames),
        ("names", &names),
        ("sanitizer", &texts),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (n, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{n:02}")), input).unwrap();
        }
        println!("{}: {} seeds", dir.display(), inputs.len());
    }
}
