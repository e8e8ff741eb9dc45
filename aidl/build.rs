//! Generates the host (rsbinder) Rust bindings from the same `.aidl` files Soong compiles:
//! the sources (the version under development, or the newest frozen one) and every frozen
//! version in `aidl_api/`, so tests can speak an older version to a newer peer and back.

use std::path::{Path, PathBuf};

/// The version the sources are: the newest frozen one while `Android.bp` says
/// `frozen: true`, else the next one (then `SOURCES_FROZEN` is false).
const SOURCES_VERSION: i32 = 2;
/// Whether `SOURCES_VERSION` is frozen (`aidl_api/vendor.dmaload/<SOURCES_VERSION>` holds its
/// dump and hash, and the sources equal it), as `frozen:` in `Android.bp` says.
const SOURCES_FROZEN: bool = true;
/// Older frozen versions whose bindings are generated too (`aidl_api/vendor.dmaload/<N>`).
const FROZEN: &[i32] = &[1];

/// The hash AOSP's aidl_api.go recorded for a frozen version.
fn frozen_hash(version: i32) -> String {
    let hash_file = PathBuf::from(format!("aidl_api/vendor.dmaload/{version}/.hash"));
    println!("cargo:rerun-if-changed={}", hash_file.display());
    let hash = std::fs::read_to_string(&hash_file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", hash_file.display()));
    hash.lines().last().unwrap_or_default().trim().to_string()
}

fn aidl_files(dir: &Path) -> Vec<PathBuf> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "aidl"))
        .collect();
    files.sort();
    files
}

fn generate(dir: &Path, version: i32, hash: &str, output: &str) {
    let builder = aidl_files(dir).into_iter().fold(
        rsbinder_aidl::Builder::new().set_async_support(false),
        |b, src| b.source(src).version(version).hash(hash),
    );
    if let Err(err) = builder.output(PathBuf::from(output)).generate() {
        panic!("generating {output} from {}: {err:?}", dir.display());
    }
}

fn main() {
    let sources_hash = if SOURCES_FROZEN {
        frozen_hash(SOURCES_VERSION)
    } else {
        "notfrozen".to_string()
    };
    generate(
        Path::new("vendor/dmaload"),
        SOURCES_VERSION,
        &sources_hash,
        "vendor_dmaload.rs",
    );
    for &version in FROZEN {
        let root = PathBuf::from(format!("aidl_api/vendor.dmaload/{version}"));
        let hash = frozen_hash(version);
        generate(
            &root.join("vendor/dmaload"),
            version,
            &hash,
            &format!("vendor_dmaload_v{version}.rs"),
        );
    }
}
