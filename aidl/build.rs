//! Generates the host (rsbinder) Rust bindings from the same `.aidl` files Soong compiles.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from("vendor/dmaload");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "aidl"))
        .collect();
    sources.sort();
    let builder = sources.into_iter().fold(
        rsbinder_aidl::Builder::new().set_async_support(false),
        |b, src| b.source(src),
    );
    if let Err(err) = builder
        .output(PathBuf::from("vendor_dmaload.rs"))
        .generate()
    {
        panic!("generating the vendor.dmaload bindings: {err:?}");
    }
}
