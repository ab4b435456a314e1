//! Conformance: the route-by-error filter written in every guest language makes the same decisions on the same
//! golden input (tests/conformance/), refuses a bad configuration with the same words, and runs under the same
//! host, whatever its profile (component or command).
//!
//! The non-Rust modules are built from source by `scripts/build-guest-filters.sh` (which `scripts/test.sh` runs
//! after `scripts/guest-toolchains.sh`); a missing module fails its test with the command that builds it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{filters, redrive, repo, run};

const CUSTOM: &str = "transient=disk+on+fire,flaky&permanent=schema+version,422&default=discard";

/// The golden input: the committed cases plus a generated 200 KiB message.
fn golden_input(dir: &Path) -> PathBuf {
    let path = dir.join("input.jsonl");
    let status = Command::new("python3")
        .arg(repo().join("tests/conformance/make-input.py"))
        .arg(&path)
        .status()
        .expect("cannot run python3 tests/conformance/make-input.py");
    assert!(status.success(), "tests/conformance/make-input.py failed");
    path
}

fn module_for(lang: &str) -> PathBuf {
    let path = if lang == "rust" {
        filters().join("route-by-error.wasm")
    } else {
        repo().join(format!("build/filters/route-by-error-{lang}.wasm"))
    };
    assert!(
        path.exists(),
        "{} is missing: build it with  scripts/guest-toolchains.sh {lang} && scripts/build-guest-filters.sh {lang}",
        path.display()
    );
    path
}

fn conformance(lang: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let input = golden_input(tmp.path());
    let module = module_for(lang).display().to_string();
    let expected = repo().join("tests/conformance/route-by-error");
    for (spec, expect) in [
        (module.clone(), "expected-default.jsonl"),
        (format!("{module}?{CUSTOM}"), "expected-custom.jsonl"),
    ] {
        let (code, stdout, stderr) = run(redrive(tmp.path()).args([
            "filter",
            "test",
            &spec,
            "--input",
            &input.display().to_string(),
            "--expect",
            &expected.join(expect).display().to_string(),
        ]));
        assert_eq!(code, 0, "{lang}, {expect}:\n{stdout}\n{stderr}");
        assert!(
            stdout.contains("18 messages"),
            "{lang}: every golden message decided:\n{stdout}"
        );
    }
    for (query, words) in [
        (
            "colour=red",
            "unknown config key 'colour' (known keys: transient, permanent, default)",
        ),
        (
            "default=maybe",
            "config key 'default': invalid value 'maybe' (expected one of replay, skip, discard)",
        ),
    ] {
        let (code, stdout, stderr) = run(redrive(tmp.path()).args([
            "filter",
            "test",
            &format!("{module}?{query}"),
            "--input",
            &input.display().to_string(),
        ]));
        assert_eq!(code, 2, "{lang} must refuse ?{query}:\n{stdout}\n{stderr}");
        assert!(
            stderr.contains("refused its configuration") && stderr.contains(words),
            "{lang}, ?{query}: {stderr}"
        );
    }
}

macro_rules! languages {
    ($($test:ident => $lang:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                conformance($lang);
            }
        )*
    };
}

languages! {
    rust_component => "rust",
    c_component => "c",
    python_component => "python",
    javascript_component => "js",
    typescript_component => "ts",
    zig_command => "zig",
    go_command => "go",
    assemblyscript_command => "assemblyscript",
}
