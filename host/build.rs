//! Rebuild when a `redrive filter new` template or the guest SDK changes: they are compiled into the binary
//! (`include_dir!`), and a file added to a template directory is not otherwise noticed by cargo.
//!
//! On Linux with glibc 2.36 or later, link the binary with packed relative relocations
//! (`-z pack-relative-relocs`, DT_RELR; GNU ld 2.38+, lld 15+): without them the dynamic loader reads ~2.4 MB
//! of relocation entries at every start, 2.3 MiB of every run's resident memory (BENCHMARKS.md, issue 18).
//! Such a binary needs glibc 2.36 to start, so the option is only used when building natively on a glibc that
//! has it (an older GNU ld ignores it with a warning).
fn main() {
    println!("cargo:rerun-if-changed=../templates");
    println!("cargo:rerun-if-changed=../guest-sdk/src");
    println!("cargo:rerun-if-changed=../guest-sdk/wit");
    let var = |name| std::env::var(name).unwrap_or_default();
    let native = var("HOST") == var("TARGET");
    if native && var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" && glibc_has_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the glibc this build script runs on (the target's, in a native build) is 2.36 or later.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_has_relr() -> bool {
    unsafe extern "C" {
        fn gnu_get_libc_version() -> *const std::ffi::c_char;
    }
    // SAFETY: glibc returns a pointer to a static, NUL-terminated version string such as "2.36".
    let version = unsafe { std::ffi::CStr::from_ptr(gnu_get_libc_version()) };
    let mut parts = version
        .to_str()
        .unwrap_or_default()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_has_relr() -> bool {
    false
}
