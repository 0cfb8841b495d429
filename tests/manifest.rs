//! Cargo.toml tells the truth: `rust-version` is the real minimum, i.e. the
//! highest `rust-version` any locked dependency built for Linux declares
//! (read with `cargo metadata --locked --offline`; the packages are already
//! downloaded when the tests run).

use std::process::Command;

use serde_json::Value;

fn version(text: &str) -> Vec<u64> {
    text.split('.')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("bad version {text}")))
        .collect()
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", "x86_64-unknown-linux-gnu"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn rust_version_is_the_highest_of_the_locked_dependencies() {
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages");
    let ours = packages
        .iter()
        .find(|p| p["name"] == "nodereaper")
        .expect("nodereaper in metadata");
    let declared = version(ours["rust_version"].as_str().expect("rust-version set"));
    let (needed, by) = packages
        .iter()
        .filter(|p| p["name"] != "nodereaper")
        .filter_map(|p| {
            let rv = p["rust_version"].as_str()?;
            Some((version(rv), format!("{} {}", p["name"], p["version"])))
        })
        .max()
        .expect("some dependency declares a rust-version");
    assert!(
        packages.len() > 100,
        "metadata lists only {} packages",
        packages.len()
    );
    assert_eq!(
        declared, needed,
        "Cargo.toml rust-version is {declared:?}, the locked dependencies need {needed:?} ({by})"
    );
}
