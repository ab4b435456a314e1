//! `redrive filter new`: write a ready-to-build filter project from the templates compiled into the binary.
//!
//! The templates live in `templates/<lang>/` of the repository. In file contents, `{{name}}` becomes the
//! filter's name and `{{name_snake}}` the name with `_` for `-`. Component languages also get the WIT
//! contract in `wit/`, command languages its JSON schema, and Rust a copy of the guest SDK.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use include_dir::{Dir, DirEntry, include_dir};

use super::exit;
use crate::cli::{FilterNewArgs, Lang};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../templates");
static GUEST_SDK_SRC: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../guest-sdk/src");
const FILTER_WIT: &str = include_str!("../../../guest-sdk/wit/filter.wit");
const COMMAND_SCHEMA: &str = include_str!("../../../guest-sdk/wit/command.schema.json");

impl Lang {
    fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::C => "c",
            Lang::Zig => "zig",
            Lang::Go => "go",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::Ts => "ts",
            Lang::Assemblyscript => "assemblyscript",
        }
    }

    /// Which profile of the contract the language's filters implement.
    fn is_component(self) -> bool {
        matches!(self, Lang::Rust | Lang::C | Lang::Python | Lang::Js | Lang::Ts)
    }
}

/// Run `redrive filter new`.
pub fn run(args: &FilterNewArgs) -> Result<u8> {
    if let Err(problem) = check_name(&args.name) {
        eprintln!("error: invalid filter name {:?}: {problem}", args.name);
        return Ok(exit::USAGE);
    }
    let project = args.dir.join(&args.name);
    if project.exists()
        && std::fs::read_dir(&project)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        eprintln!(
            "error: {} already exists and is not empty; pick another name or --dir",
            project.display()
        );
        return Ok(exit::USAGE);
    }
    let files = project_files(args.lang, &args.name)?;
    for (path, contents) in &files {
        write_file(&project, path, contents)?;
    }
    println!(
        "Created {} ({} filter, {} profile, {} files).",
        project.display(),
        args.lang.dir(),
        if args.lang.is_component() {
            "component"
        } else {
            "command"
        },
        files.len()
    );
    println!("Next:");
    println!("  cd {}", project.display());
    println!("  ./build.sh                # see README.md for the toolchain it needs");
    println!(
        "  redrive filter test {}.wasm --input sample/input.jsonl --expect sample/expected.jsonl",
        args.name
    );
    Ok(exit::OK)
}

/// Names end up as directory, package, module and crate names: keep them portable.
fn check_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("it is empty"),
        Some(c) if !c.is_ascii_lowercase() => return Err("it must start with a lowercase letter (a-z)"),
        Some(_) => {}
    }
    if name.len() > 64 {
        return Err("it is longer than 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("use only lowercase letters, digits and '-'");
    }
    if name.ends_with('-') || name.contains("--") {
        return Err("'-' must separate words (no trailing or doubled '-')");
    }
    Ok(())
}

/// Every file of the new project: relative path and contents.
fn project_files(lang: Lang, name: &str) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let template = TEMPLATES
        .get_dir(lang.dir())
        .with_context(|| format!("this redrive was built without the {} template", lang.dir()))?;
    let mut files = Vec::new();
    collect(template, Path::new(lang.dir()), &mut files);
    let mut out: Vec<(PathBuf, Vec<u8>)> = files
        .into_iter()
        .map(|(path, bytes)| (path, fill_in(bytes, name)))
        .collect();
    if lang.is_component() {
        let wit_dir = if lang == Lang::Rust { "redrive-guest/wit" } else { "wit" };
        out.push((Path::new(wit_dir).join("filter.wit"), FILTER_WIT.as_bytes().to_vec()));
    } else {
        out.push((PathBuf::from("command.schema.json"), COMMAND_SCHEMA.as_bytes().to_vec()));
    }
    if lang == Lang::Rust {
        let mut sdk = Vec::new();
        collect(&GUEST_SDK_SRC, Path::new(""), &mut sdk);
        out.extend(
            sdk.into_iter()
                .map(|(path, bytes)| (Path::new("redrive-guest/src").join(path), bytes)),
        );
    }
    Ok(out)
}

/// Files under `dir`, with paths relative to `base` (the template's own directory).
fn collect(dir: &Dir<'static>, base: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in dir.entries() {
        match entry {
            DirEntry::Dir(sub) => collect(sub, base, out),
            DirEntry::File(file) => {
                let relative = file.path().strip_prefix(base).unwrap_or(file.path());
                out.push((relative.to_path_buf(), file.contents().to_vec()));
            }
        }
    }
}

/// Replace the placeholders in a text file; binary files are copied unchanged.
fn fill_in(bytes: Vec<u8>, name: &str) -> Vec<u8> {
    match String::from_utf8(bytes) {
        Ok(text) => text
            .replace("{{name_snake}}", &name.replace('-', "_"))
            .replace("{{name}}", name)
            .into_bytes(),
        Err(e) => e.into_bytes(),
    }
}

fn write_file(project: &Path, relative: &Path, contents: &[u8]) -> Result<()> {
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        bail!("template path {} escapes the project directory", relative.display());
    }
    let path = project.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    if path.extension().is_some_and(|e| e == "sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_are_checked() {
        assert!(check_name("my-filter2").is_ok());
        for bad in ["", "My", "2x", "a_b", "a--b", "a-", "a b", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn placeholders_are_filled_in() {
        let out = fill_in(b"name={{name}} snake={{name_snake}}".to_vec(), "my-filter");
        assert_eq!(out, b"name=my-filter snake=my_filter");
        let binary = vec![0xff, 0x00, b'{', b'{'];
        assert_eq!(fill_in(binary.clone(), "x"), binary);
    }

    #[test]
    fn every_language_has_a_template_with_a_build_script_and_samples() {
        for lang in Lang::value_variants() {
            let files = project_files(*lang, "probe").unwrap();
            let has = |p: &str| files.iter().any(|(path, _)| path == Path::new(p));
            for required in ["build.sh", "README.md", "sample/input.jsonl", "sample/expected.jsonl"] {
                assert!(has(required), "{lang:?} template lacks {required}");
            }
            assert!(has(if lang.is_component() {
                if *lang == Lang::Rust {
                    "redrive-guest/wit/filter.wit"
                } else {
                    "wit/filter.wit"
                }
            } else {
                "command.schema.json"
            }));
        }
    }
}
