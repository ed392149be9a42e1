//! Link settings for the Windows build: WinFsp's DLL is loaded on first use
//! (delay-loaded) rather than at start, so `wimfs info`, `verify` and the
//! other commands that do not mount run on a machine without WinFsp, and a
//! mount can say "install WinFsp" instead of the loader failing. WinFsp
//! installs its DLL outside the DLL search path; the `winfsp` crate finds
//! and loads it (`winfsp_init`) before the first call. Nothing happens for
//! any other target.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "windows" {
        return;
    }
    // The type-check from Linux (prebuilt bindings) links nothing.
    if var("CARGO_FEATURE_WINFSP_PREBUILT_BINDINGS") == "1" {
        return;
    }
    let dll = match var("CARGO_CFG_TARGET_ARCH").as_str() {
        "x86_64" => "winfsp-x64.dll",
        "aarch64" => "winfsp-a64.dll",
        "x86" => "winfsp-x86.dll",
        other => panic!("WinFsp has no DLL for the architecture {other:?}"),
    };
    if var("CARGO_CFG_TARGET_ENV") == "msvc" {
        println!("cargo:rustc-link-lib=dylib=delayimp");
        println!("cargo:rustc-link-arg=/DELAYLOAD:{dll}");
    } else {
        println!("cargo:rustc-link-arg=-Wl,--delayload={dll}");
    }
}
