//! The maintainer scripts. shellcheck reads them; then each runs under
//! /bin/sh with PATH holding ONLY stubs that log their arguments: every
//! command a script calls must be stubbed (an unexpected one is "not found"
//! and fails the test), so nothing on this machine is changed. `getent`
//! answers as the test says (account present or not).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{ok, repo, run};

const STUBS: &[&str] = &[
    "groupadd",
    "useradd",
    "chown",
    "chmod",
    "install",
    "systemctl",
    "rm",
    "userdel",
];

struct Stubbed {
    dir: tempfile::TempDir,
}

impl Stubbed {
    /// `account_exists`: what `getent group|passwd nodereaper` answers.
    fn new(account_exists: bool) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("calls.log");
        let write = |name: &str, body: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("stub");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod stub");
        };
        for name in STUBS {
            write(name, format!("echo \"{name} $*\" >> '{}'", log.display()));
        }
        let rc = if account_exists { 0 } else { 2 };
        write(
            "getent",
            format!("echo \"getent $*\" >> '{}'\nexit {rc}", log.display()),
        );
        Self { dir }
    }

    fn run(&self, script: &Path, args: &[&str]) -> Vec<String> {
        let (passed, out, err) = run(Command::new("/bin/sh")
            .arg(script)
            .args(args)
            .env_clear()
            .env("PATH", self.dir.path()));
        assert!(
            passed,
            "{} {args:?} failed:\n{out}\n{err}",
            script.display()
        );
        std::fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn deb_script(name: &str) -> PathBuf {
    repo().join("packaging/deb").join(name)
}

fn rpm_script(name: &str) -> PathBuf {
    repo().join("packaging/rpm").join(format!("{name}.sh"))
}

#[test]
fn maintainer_scripts_pass_shellcheck() {
    super::tools();
    let deb: Vec<PathBuf> = ["postinst", "prerm", "postrm"]
        .iter()
        .map(|s| deb_script(s))
        .collect();
    ok(Command::new("shellcheck").args(&deb));
    let rpm: Vec<PathBuf> = ["pre", "post", "preun", "postun"]
        .iter()
        .map(|s| rpm_script(s))
        .collect();
    ok(Command::new("shellcheck").args(["-s", "sh"]).args(&rpm));
}

fn has(calls: &[String], wanted: &str) -> bool {
    calls.iter().any(|c| c == wanted)
}

#[test]
fn postinst_on_a_fresh_host_creates_the_account_and_the_private_journal() {
    let calls = Stubbed::new(false).run(&deb_script("postinst"), &["configure", ""]);
    assert!(has(&calls, "groupadd --system nodereaper"), "{calls:#?}");
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("useradd --system --gid nodereaper")
                && c.ends_with(" nodereaper")),
        "{calls:#?}"
    );
    assert!(
        has(
            &calls,
            "chown root:nodereaper /etc/nodereaper/nodereaper.toml"
        ),
        "{calls:#?}"
    );
    assert!(
        has(&calls, "chmod 0640 /etc/nodereaper/nodereaper.toml"),
        "{calls:#?}"
    );
    assert!(
        has(
            &calls,
            "install -d -m 0700 -o nodereaper -g nodereaper /var/lib/nodereaper/journal"
        ),
        "{calls:#?}"
    );
}

/// Hostile twin: an upgrade (or an account made by the operator) must not
/// try to create the account again, which would fail the installation.
#[test]
fn postinst_keeps_an_existing_account() {
    let calls = Stubbed::new(true).run(&deb_script("postinst"), &["configure", "0.1.0-1"]);
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("useradd") || c.starts_with("groupadd")),
        "{calls:#?}"
    );
    assert!(has(
        &calls,
        "chown root:nodereaper /etc/nodereaper/nodereaper.toml"
    ));
}

/// Removal and purge keep the journal (the backups) and the account.
#[test]
fn removal_and_purge_keep_the_journal_and_the_account() {
    for args in [["remove"], ["purge"]] {
        let stub = Stubbed::new(true);
        let mut calls = stub.run(&deb_script("prerm"), &args);
        calls.extend(stub.run(&deb_script("postrm"), &args));
        assert!(
            !calls.iter().any(|c| c.starts_with("rm")
                || c.starts_with("userdel")
                || c.contains("/var/lib/nodereaper")),
            "{args:?}: {calls:#?}"
        );
    }
    let stub = Stubbed::new(true);
    let mut calls = stub.run(&rpm_script("preun"), &["0"]);
    calls.extend(stub.run(&rpm_script("postun"), &["0"]));
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("rm") || c.starts_with("userdel")),
        "{calls:#?}"
    );
}

#[test]
fn rpm_scripts_create_the_account_before_the_files_and_the_journal_after() {
    let calls = Stubbed::new(false).run(&rpm_script("pre"), &["1"]);
    assert!(has(&calls, "groupadd --system nodereaper"), "{calls:#?}");
    assert!(calls.iter().any(|c| c.starts_with("useradd --system")));
    let calls = Stubbed::new(true).run(&rpm_script("pre"), &["2"]);
    assert!(
        !calls.iter().any(|c| c.starts_with("useradd")),
        "{calls:#?}"
    );
    let calls = Stubbed::new(true).run(&rpm_script("post"), &["1"]);
    assert!(has(
        &calls,
        "install -d -m 0700 -o nodereaper -g nodereaper /var/lib/nodereaper/journal"
    ));
}
