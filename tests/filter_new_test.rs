//! `redrive filter new`, as a new user would try it: generate a project for each language, build it with its own
//! build script, and run `redrive filter test` on the samples it ships. The toolchains come from
//! `scripts/guest-toolchains.sh` (which `scripts/test.sh` runs); a missing one fails the test with what to install.

mod common;

use std::path::Path;
use std::process::Command;

use common::{redrive, run};

fn new_project_builds_and_passes_its_samples(lang: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("my-{lang}-filter");
    let (code, stdout, stderr) = run(redrive(tmp.path()).args([
        "filter",
        "new",
        "--lang",
        lang,
        &name,
        "--dir",
        &tmp.path().display().to_string(),
    ]));
    assert_eq!(code, 0, "{lang}: filter new failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("./build.sh"), "{lang}: next steps printed:\n{stdout}");
    let project = tmp.path().join(&name);

    let mut build = Command::new("bash");
    build.arg(project.join("build.sh")).current_dir(&project);
    if lang == "rust" {
        // Share compiled dependencies between runs (the SDK's wit-bindgen takes a while).
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| common::repo().join("target"))
            .join("filter-new");
        build.env("CARGO_TARGET_DIR", target);
        // The machine's default toolchain may lack wasm32-wasip2; use the repository's pinned one, which
        // scripts/setup.sh installed with its wasm targets.
        let pinned = std::fs::read_to_string(common::repo().join("rust-toolchain.toml")).unwrap();
        let channel = pinned
            .lines()
            .find_map(|l| l.strip_prefix("channel = "))
            .map(|v| v.trim_matches('"').to_string())
            .expect("a channel in rust-toolchain.toml");
        build.env("RUSTUP_TOOLCHAIN", channel);
    }
    let out = build.output().expect("cannot run build.sh");
    assert!(
        out.status.success(),
        "{lang}: ./build.sh of a new project failed (is its toolchain installed? scripts/guest-toolchains.sh):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let module = project.join(format!("{name}.wasm"));
    assert!(module.is_file(), "{lang}: build.sh did not write {}", module.display());

    let sample = |f: &str| project.join("sample").join(f).display().to_string();
    let (code, stdout, stderr) = run(redrive(tmp.path()).current_dir(&project).args([
        "filter",
        "test",
        &module.display().to_string(),
        "--input",
        &sample("input.jsonl"),
        "--expect",
        &sample("expected.jsonl"),
    ]));
    assert_eq!(code, 0, "{lang}: the generated samples must pass:\n{stdout}\n{stderr}");
    assert!(stdout.contains("4 messages: 2 replay, 2 skip"), "{lang}:\n{stdout}");

    // The project's own config handling: an unknown key is refused at start.
    let (code, _, stderr) = run(redrive(tmp.path()).args([
        "filter",
        "test",
        &format!("{}?colour=red", module.display()),
        "--input",
        &sample("input.jsonl"),
    ]));
    assert_eq!(code, 2, "{lang}: {stderr}");
    assert!(stderr.contains("unknown config key 'colour'"), "{lang}: {stderr}");
    assert!(Path::new(&project.join("README.md")).is_file());
}

#[test]
fn a_name_that_would_not_work_everywhere_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(redrive(tmp.path()).args(["filter", "new", "--lang", "go", "My Filter"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid filter name"), "{stderr}");
    let (code, _, stderr) = run(redrive(tmp.path()).args(["filter", "new", "--lang", "cobol", "x"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("cobol"), "{stderr}");
}

#[test]
fn an_existing_project_is_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("taken")).unwrap();
    std::fs::write(tmp.path().join("taken/keep.txt"), "mine").unwrap();
    let dir = tmp.path().display().to_string();
    let (code, _, stderr) = run(redrive(tmp.path()).args(["filter", "new", "--lang", "go", "taken", "--dir", &dir]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );
}

macro_rules! languages {
    ($($test:ident => $lang:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                new_project_builds_and_passes_its_samples($lang);
            }
        )*
    };
}

languages! {
    new_rust_filter => "rust",
    new_c_filter => "c",
    new_zig_filter => "zig",
    new_go_filter => "go",
    new_python_filter => "python",
    new_javascript_filter => "js",
    new_typescript_filter => "ts",
    new_assemblyscript_filter => "assemblyscript",
}
