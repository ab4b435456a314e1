//! The build without brokers (`scripts/quickstart.sh`, `--no-default-features`) must compile every
//! crate it shares with the full build with the same features, or building the brokers in afterwards recompiles
//! that crate and everything above it (wasmtime and cranelift included: minutes). feature-unification/Cargo.toml
//! turns those features on in every build; this test compares the two dependency trees as cargo resolves them
//! (`cargo tree`, no compiling) and names what that list is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Which side of the build a crate is compiled for: cargo resolves features separately for the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    /// Linked into redrive.
    Target,
    /// Build scripts and proc-macros, run on the build machine.
    Host,
}

/// `"name version"` and side → every feature list cargo resolves for it.
type Features = BTreeMap<(String, Side), BTreeSet<String>>;

/// A crate name → the names of every crate that depends on it, directly or not.
type Dependents = BTreeMap<String, BTreeSet<String>>;

/// Crates left out of feature-unification/Cargo.toml on purpose: their extra features in the full build cost
/// the quickstart's build more than recompiling what sits above them costs the later one.
const MAY_DIFFER: [&str; 7] = [
    // The full build's `http2` compiles h2 (and tower's balance, buffer, ... for tonic).
    "hyper",
    "hyper-util",
    "tower",
    "sync_wrapper",
    // Unicode tables and three more engines for the `regex` crate of the broker clients.
    "regex-automata",
    "regex-syntax",
    // `spin_no_std` for the broker clients' `lazy_static` users.
    "lazy_static",
];

/// What may be recompiled above a crate of [`MAY_DIFFER`]: quick crates only (not wasmtime or cranelift, whose
/// recompiling is what this test exists to prevent).
const MAY_RECOMPILE_ABOVE: [&str; 8] = [
    "axum",
    "axum-core",
    "hyper-util",
    "tower",
    "matchers",
    "regex-automata",
    "sharded-slab",
    "tracing-subscriber",
];

/// Indentation units of `cargo tree`'s default output: each is four characters.
const UNITS: [&str; 4] = ["│   ", "    ", "├── ", "└── "];

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// `cargo tree` of the redrive package, with or without its default features (the brokers).
fn tree(with_brokers: bool) -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(cargo());
    cmd.current_dir(&workspace).args([
        "tree",
        "--locked",
        "-p",
        "redrive",
        "-e",
        "normal,build",
        "--no-dedupe",
        "-f",
        "{p} {f}",
        // The machine's own platform, where host and target features are resolved apart as in a build.
        "--target",
        "host-tuple",
    ]);
    if !with_brokers {
        cmd.arg("--no-default-features");
    }
    let out = cmd.output().expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

/// Every crate in a `cargo tree` listing, with its side (below a proc-macro or a `[build-dependencies]`
/// section: host) and its features; and what depends on each.
fn parse(tree: &str) -> (Features, Dependents) {
    let mut found = Features::new();
    let mut dependents = Dependents::new();
    // (level, is the subtree host-side, crate name; none for a section header) of the open ancestors.
    let mut open: Vec<(usize, bool, Option<String>)> = Vec::new();
    for line in tree.lines() {
        let mut rest = line;
        let mut depth = 0;
        while let Some(unit) = UNITS.iter().find(|u| rest.starts_with(*u)) {
            rest = &rest[unit.len()..];
            depth += 1;
        }
        // A section header is printed at its owner's depth but belongs to it: it sorts between the owner (2d)
        // and the owner's dependencies (2d + 2).
        let header = rest.starts_with('[');
        let level = 2 * depth + usize::from(header);
        open.retain(|(l, _, _)| *l < level);
        let inherited = open.iter().any(|(_, host, _)| *host);
        if header {
            open.push((level, inherited || rest.starts_with("[build-dependencies]"), None));
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let [name, version, more @ ..] = words.as_slice() else {
            continue;
        };
        let host = inherited || rest.contains("(proc-macro)");
        let features = more.iter().find(|w| !w.starts_with('(')).copied().unwrap_or("");
        let side = if host { Side::Host } else { Side::Target };
        found
            .entry((format!("{name} {version}"), side))
            .or_default()
            .insert(features.to_owned());
        let above = dependents.entry((*name).to_owned()).or_default();
        above.extend(open.iter().filter_map(|(_, _, n)| n.clone()));
        open.push((level, host, Some((*name).to_owned())));
    }
    (found, dependents)
}

#[test]
fn the_parser_tells_host_crates_from_target_crates() {
    let sample = "\
redrive v0.1.0 (/x) amqp,default
├── tokio v1.0.0 rt,sync
│   └── tokio-macros v2.0.0 (proc-macro) 
│       └── syn v2.0.0 full
├── ring v0.17.0 default
│   [build-dependencies]
│   └── cc v1.2.0 
└── bytes v1.0.0 std
";
    let (parsed, dependents) = parse(sample);
    assert_eq!(
        dependents["syn"],
        BTreeSet::from(["redrive".to_owned(), "tokio".to_owned(), "tokio-macros".to_owned()])
    );
    assert_eq!(
        dependents["cc"],
        BTreeSet::from(["redrive".to_owned(), "ring".to_owned()])
    );
    let side = |name: &str| parsed.keys().find(|(n, _)| n.starts_with(name)).map(|(_, s)| *s);
    assert_eq!(side("tokio "), Some(Side::Target));
    assert_eq!(side("tokio-macros"), Some(Side::Host));
    assert_eq!(side("syn"), Some(Side::Host));
    assert_eq!(side("cc"), Some(Side::Host));
    assert_eq!(side("bytes"), Some(Side::Target));
    assert_eq!(
        parsed[&("tokio v1.0.0".to_owned(), Side::Target)],
        BTreeSet::from(["rt,sync".to_owned()])
    );
    assert_eq!(
        parsed[&("cc v1.2.0".to_owned(), Side::Host)],
        BTreeSet::from([String::new()])
    );
}

#[test]
fn the_build_without_brokers_compiles_shared_crates_as_the_full_build_does() {
    let (full, _) = parse(&tree(true));
    let (files_only, dependents) = parse(&tree(false));
    assert!(
        files_only.len() > 100 && full.len() > files_only.len(),
        "cargo tree listed {} crates without the brokers and {} with them: the parser no longer reads its output",
        files_only.len(),
        full.len()
    );
    let mut differ = Vec::new();
    for ((krate, side), features) in &files_only {
        let name = krate.split(' ').next().unwrap_or_default();
        if name == "redrive" {
            continue; // its own features are what differs
        }
        let with_brokers = full.get(&(krate.clone(), *side));
        if with_brokers == Some(features) {
            continue;
        }
        if MAY_DIFFER.contains(&name) {
            let costly: Vec<&String> = dependents[name]
                .iter()
                .filter(|d| *d != "redrive" && !MAY_RECOMPILE_ABOVE.contains(&d.as_str()))
                .collect();
            assert!(
                costly.is_empty(),
                "{krate} is left out of feature-unification/Cargo.toml because only quick crates sit above it, \
                 but now {costly:?} do: add it there with the full build's features {:?}",
                with_brokers.cloned().unwrap_or_default()
            );
        } else {
            differ.push(format!(
                "  {krate} ({side:?}): without brokers {features:?}, with them {:?}",
                with_brokers.cloned().unwrap_or_default()
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "building the brokers in after `scripts/quickstart.sh` (no brokers) would recompile these crates and \
         everything above them. Add the full build's features to feature-unification/Cargo.toml \
         ([dependencies] for Target, [build-dependencies] for Host):\n{}",
        differ.join("\n")
    );
}
