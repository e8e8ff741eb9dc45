//! Generates Rust for the test-only AIDL in vts/aidl/ (rsbinder, no async).

fn main() {
    println!("cargo:rerun-if-changed=aidl");
    rsbinder_aidl::Builder::new()
        .source(std::path::PathBuf::from(
            "aidl/dmaload/vts/IDmaBufPeer.aidl",
        ))
        .output(std::path::PathBuf::from("vts_aidl.rs"))
        .generate()
        .expect("vts/aidl/ does not compile with rsbinder-aidl");
}
