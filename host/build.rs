//! Rebuild when a `redrive filter new` template or the guest SDK changes: they are compiled into the binary
//! (`include_dir!`), and a file added to a template directory is not otherwise noticed by cargo.
fn main() {
    println!("cargo:rerun-if-changed=../templates");
    println!("cargo:rerun-if-changed=../guest-sdk/src");
    println!("cargo:rerun-if-changed=../guest-sdk/wit");
}
