//! What the package installs besides the binary: the unit, the completions
//! and the man pages; and the ignored checks of the packages
//! scripts/package.sh builds with cargo-deb and cargo-generate-rpm.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{built, check_deb_contents, check_lintian, ok, run};

/// `systemd-analyze verify` on a unit: its complaints about it (errors and
/// warnings such as an unknown key), empty when it is clean.
fn verify_unit(text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("nodereaper.service");
    std::fs::write(&unit, text).expect("write unit");
    let (passed, out, err) = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("SYSTEMD_LOG_LEVEL", "warning"));
    let complaints: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("nodereaper.service"))
        .collect();
    match passed {
        true => complaints.join("\n"),
        false => format!("exit failure:\n{out}\n{err}"),
    }
}

/// The unit as the package installs it. systemd-analyze checks that
/// ExecStart's binary exists, and --root= needs a whole systemd tree, so the
/// unit is verified in place with ExecStart pointing at the package's binary
/// (the one change); everything else is verified as shipped. A unit with an
/// unknown key is caught by the same check.
#[test]
fn installed_unit_passes_systemd_analyze_verify() {
    let b = built();
    let shipped = std::fs::read_to_string(b.stage.join("lib/systemd/system/nodereaper.service"))
        .expect("unit in the package");
    let bin = b.stage.join("usr/bin/nodereaper");
    let unit = shipped.replace(
        "ExecStart=/usr/bin/nodereaper ",
        &format!("ExecStart={} ", bin.display()),
    );
    assert_ne!(unit, shipped, "ExecStart is not /usr/bin/nodereaper");
    assert_eq!(verify_unit(&unit), "");
    let typo = unit.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes");
    assert!(verify_unit(&typo).contains("NoNewPrivilege"));
}

#[test]
fn bash_completion_sources_and_completes_the_commands() {
    let script = built().docs.join("completions/nodereaper.bash");
    let out = ok(Command::new("bash").arg("-c").arg(format!(
        "set -e; source '{}'; complete -p nodereaper",
        script.display()
    )));
    assert!(out.contains("nodereaper"), "{out}");
    let text = std::fs::read_to_string(&script).expect("script");
    for cmd in ["run", "sweep", "doctor", "completions", "manpages"] {
        assert!(text.contains(cmd), "completion lacks {cmd}");
    }
}

#[test]
fn zsh_and_fish_completions_are_generated() {
    let docs = &built().docs;
    let zsh = std::fs::read_to_string(docs.join("completions/_nodereaper")).expect("zsh");
    assert!(zsh.starts_with("#compdef nodereaper"), "{zsh:.80}");
    let fish = std::fs::read_to_string(docs.join("completions/nodereaper.fish")).expect("fish");
    assert!(fish.contains("complete -c nodereaper"), "{fish:.80}");
}

fn man_pages(docs: &Path) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(docs.join("man"))
        .expect("man dir")
        .map(|e| e.expect("entry").path())
        .collect();
    pages.sort();
    pages
}

/// One page for the program and one per command; `man -l` renders each
/// without a warning.
#[test]
fn man_pages_render() {
    let pages = man_pages(&built().docs);
    let names: Vec<String> = pages
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    for cmd in [
        "",
        "-run",
        "-deregister",
        "-sweep",
        "-journal",
        "-restore",
        "-doctor",
    ] {
        let want = format!("nodereaper{cmd}.1.gz");
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    for page in &pages {
        let (passed, out, err) = run(Command::new("man")
            .arg("--warnings")
            .arg("-l")
            .arg(page)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat"));
        assert!(passed && err.trim().is_empty(), "{}: {err}", page.display());
        assert!(out.contains("NAME") && out.contains("nodereaper"), "{out}");
    }
}

/// A .deb made by `scripts/package.sh deb` (cargo-deb, release build).
#[test]
#[ignore = "needs scripts/package.sh deb; run with NODEREAPER_DEB=path -- --ignored"]
fn package_sh_deb() {
    super::tools();
    let deb = PathBuf::from(std::env::var("NODEREAPER_DEB").expect("NODEREAPER_DEB"));
    check_lintian(&deb);
    check_deb_contents(&deb);
}

/// An .rpm made by `scripts/package.sh rpm` (cargo-generate-rpm).
#[test]
#[ignore = "needs scripts/package.sh rpm; run with NODEREAPER_RPM=path -- --ignored"]
fn package_sh_rpm() {
    super::tools();
    let rpm = PathBuf::from(std::env::var("NODEREAPER_RPM").expect("NODEREAPER_RPM"));
    let files = ok(Command::new("rpm").arg("-qlp").arg(&rpm));
    for path in [
        "/usr/bin/nodereaper",
        "/usr/lib/systemd/system/nodereaper.service",
        "/etc/nodereaper/nodereaper.toml",
        "/usr/share/man/man1/nodereaper.1.gz",
        "/usr/share/bash-completion/completions/nodereaper",
    ] {
        assert!(files.lines().any(|l| l == path), "{path} not in:\n{files}");
    }
    // --dump: path size mtime digest mode owner group isconfig isdoc ...
    let dump = ok(Command::new("rpm").args(["-qp", "--dump"]).arg(&rpm));
    let conf = dump
        .lines()
        .find(|l| l.starts_with("/etc/nodereaper/nodereaper.toml "))
        .expect("config in dump");
    let f: Vec<&str> = conf.split_whitespace().collect();
    assert_eq!(
        (f[4], f[5], f[6], f[7]),
        ("0100640", "root", "nodereaper", "1"),
        "{conf}"
    );
    let scripts = ok(Command::new("rpm").args(["-qp", "--scripts"]).arg(&rpm));
    assert!(scripts.contains("useradd --system"), "{scripts}");
    assert!(scripts.contains("/var/lib/nodereaper/journal"), "{scripts}");
}
