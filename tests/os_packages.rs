//! The operating-system packages: what `scripts/package.sh deb|rpm` puts into
//! the .deb and the .rpm is defined in Cargo.toml ([package.metadata.deb],
//! [package.metadata.generate-rpm]) and packaging/{deb,rpm}/.
//!
//! CI budget: cargo-deb / cargo-generate-rpm (built from source) and a
//! release build would cost several minutes, so these tests build the .deb
//! themselves with `dpkg-deb` from the SAME [package.metadata.deb] table,
//! with the test-profile binary (stripped) in place of target/release's, and
//! check it: lintian, contents and modes (by unpacking), conffiles, the
//! maintainer scripts (shellcheck, and run with every command they call
//! stubbed in PATH: nothing on this machine changes), `systemd-analyze
//! verify`, the completions and man pages. The packages scripts/package.sh
//! builds with the real tools are checked by the same functions in the
//! ignored tests in os_packages/docs.rs (NODEREAPER_DEB / NODEREAPER_RPM=path).
//! lintian, rpm and shellcheck come from Debian (`scripts/package.sh tools`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(cmd: &mut Command) -> String {
    let (ok, out, err) = run(cmd);
    assert!(ok, "{cmd:?} failed:\n{out}\n{err}");
    out
}

fn package_sh() -> Command {
    Command::new(repo().join("scripts/package.sh"))
}

/// The tools, installed once per test binary (idempotent).
fn tools() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        ok(package_sh().arg("tools"));
    });
}

struct Built {
    _dir: tempfile::TempDir,
    deb: PathBuf,
    docs: PathBuf,
    stage: PathBuf,
}

/// The .deb, built once: stripped test binary, glibc checked, docs generated.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        tools();
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("nodereaper");
        std::fs::copy(env!("CARGO_BIN_EXE_nodereaper"), &bin).expect("copy binary");
        ok(Command::new("strip").arg("--strip-unneeded").arg(&bin));
        ok(package_sh().arg("check-glibc").arg(&bin));
        let docs = dir.path().join("docs");
        ok(package_sh().arg("docs").arg(&bin).arg(&docs));
        let stage = dir.path().join("stage");
        stage_deb(&stage, &bin, &docs);
        let deb = dir
            .path()
            .join(format!("nodereaper_{}-1_amd64.deb", version()));
        ok(Command::new("dpkg-deb")
            // gzip -1: xz of the 58 MB test binary costs ~40 s of CPU; cargo-deb uses xz.
            .args(["--root-owner-group", "-Zgzip", "-z1", "--build"])
            .arg(&stage)
            .arg(&deb));
        Built {
            _dir: dir,
            deb,
            docs,
            stage,
        }
    })
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn deb_meta() -> toml::Table {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let manifest: toml::Table = text.parse().expect("Cargo.toml parses");
    manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

fn strs(v: &toml::Value) -> Vec<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// Copies every asset of [package.metadata.deb] into `stage`, as cargo-deb
/// does: `target/release/nodereaper` is the binary, `target/packaging/` the
/// generated docs, a destination ending in `/` a directory, `*` a glob.
fn stage_deb(stage: &Path, bin: &Path, docs: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let meta = deb_meta();
    for asset in meta["assets"].as_array().expect("assets") {
        let [src, dest, mode] = <[String; 3]>::try_from(strs(asset)).expect("[src, dest, mode]");
        let src = match src.strip_prefix("target/packaging/") {
            _ if src == "target/release/nodereaper" => bin.display().to_string(),
            Some(rest) => docs.join(rest).display().to_string(),
            None => repo().join(&src).display().to_string(),
        };
        let sources: Vec<PathBuf> = glob::glob(&src)
            .expect("glob pattern")
            .map(|p| p.expect("glob entry"))
            .collect();
        assert!(!sources.is_empty(), "asset {src} matches no file");
        for source in sources {
            let target = if dest.ends_with('/') {
                stage
                    .join(&dest)
                    .join(source.file_name().expect("file name"))
            } else {
                stage.join(&dest)
            };
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&source, &target).expect("copy asset");
            let mode = u32::from_str_radix(&mode, 8).expect("octal mode");
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .expect("chmod");
        }
    }
    write_control(stage, &meta, bin);
}

/// DEBIAN/: control, conffiles, the maintainer scripts, and the copyright
/// file cargo-deb generates from the manifest.
fn write_control(stage: &Path, meta: &toml::Table, bin: &Path) {
    let debian = stage.join("DEBIAN");
    std::fs::create_dir_all(&debian).expect("mkdir DEBIAN");
    let field = |k: &str| meta[k].as_str().expect(k).to_string();
    let _ = bin;
    let depends = field("depends").replace("$auto", "libc6 (>= 2.34), libgcc-s1 (>= 4.2)");
    let size_kib = dir_size(stage) / 1024 + 1;
    let description = field("extended-description").trim().replace('\n', "\n ");
    let control = format!(
        "Package: nodereaper\nVersion: {}-1\nArchitecture: amd64\nMaintainer: {}\n\
         Installed-Size: {size_kib}\nDepends: {depends}\nSection: {}\nPriority: {}\n\
         Description: {}\n {}\n",
        version(),
        field("maintainer"),
        field("section"),
        field("priority"),
        env!("CARGO_PKG_DESCRIPTION"),
        description,
    );
    std::fs::write(debian.join("control"), control).expect("control");
    let conffiles = strs(&meta["conf-files"]).join("\n") + "\n";
    std::fs::write(debian.join("conffiles"), conffiles).expect("conffiles");
    let scripts = repo().join(field("maintainer-scripts"));
    for name in ["preinst", "postinst", "prerm", "postrm"] {
        if scripts.join(name).exists() {
            std::fs::copy(scripts.join(name), debian.join(name)).expect("copy script");
        }
    }
    let doc = stage.join("usr/share/doc/nodereaper");
    std::fs::create_dir_all(&doc).expect("mkdir doc");
    let copyright = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: nodereaper\n\nFiles: *\nCopyright: {}\nLicense: {}\n",
        field("copyright"),
        env!("CARGO_PKG_LICENSE"),
    );
    std::fs::write(doc.join("copyright"), copyright).expect("copyright");
    // cargo-deb installs `changelog` gzipped as changelog.Debian.gz.
    let entry = std::fs::read_to_string(repo().join(field("changelog"))).expect("changelog");
    assert!(
        entry.starts_with(&format!("nodereaper ({}-1) ", version())),
        "packaging/deb/changelog does not start with this version: {entry:.60}"
    );
    let changelog = doc.join("changelog.Debian");
    std::fs::copy(repo().join(field("changelog")), &changelog).expect("changelog");
    ok(Command::new("gzip").arg("-9n").arg(&changelog));
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry"))
        .map(|e| match e.file_type().expect("type").is_dir() {
            true => dir_size(&e.path()),
            false => e.metadata().expect("metadata").len(),
        })
        .sum()
}

// ---------------------------------------------------------------------------
// checks shared by the CI-built and the scripts/package.sh-built packages
// ---------------------------------------------------------------------------

/// lintian: no errors (warnings are printed by a failing assertion only).
fn check_lintian(deb: &Path) {
    let (_, out, err) = run(Command::new("lintian")
        .arg("--no-tag-display-limit")
        .arg(deb));
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{out}\n{err}");
    assert!(!err.contains("error"), "lintian failed:\n{err}");
}

/// `dpkg-deb -c`: path -> (mode string, owner).
fn listing(deb: &Path) -> BTreeMap<String, (String, String)> {
    ok(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f[5].trim_start_matches('.').to_string();
            (path, (f[0].to_string(), f[1].to_string()))
        })
        .collect()
}

fn check_deb_contents(deb: &Path) {
    let files = listing(deb);
    let expect = [
        ("/usr/bin/nodereaper", "-rwxr-xr-x"),
        ("/lib/systemd/system/nodereaper.service", "-rw-r--r--"),
        ("/etc/nodereaper/nodereaper.toml", "-rw-r-----"),
        ("/usr/share/man/man1/nodereaper.1.gz", "-rw-r--r--"),
        ("/usr/share/man/man1/nodereaper-run.1.gz", "-rw-r--r--"),
        ("/usr/share/man/man1/nodereaper-doctor.1.gz", "-rw-r--r--"),
        (
            "/usr/share/bash-completion/completions/nodereaper",
            "-rw-r--r--",
        ),
        (
            "/usr/share/zsh/vendor-completions/_nodereaper",
            "-rw-r--r--",
        ),
        (
            "/usr/share/fish/vendor_completions.d/nodereaper.fish",
            "-rw-r--r--",
        ),
        ("/usr/share/doc/nodereaper/copyright", "-rw-r--r--"),
    ];
    for (path, mode) in expect {
        let got = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} not in {files:#?}"));
        assert_eq!(got.0, mode, "{path}");
        assert_eq!(got.1, "root/root", "{path}");
    }
    // The journal is created by postinst, owned by the service user, and is
    // therefore not a file of the package: removing the package keeps it.
    assert!(!files.keys().any(|p| p.starts_with("/var/lib/nodereaper")));
    let control = tempfile::tempdir().expect("tempdir");
    ok(Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb)
        .arg(control.path()));
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).expect("conffiles");
    assert!(
        conffiles
            .lines()
            .any(|l| l == "/etc/nodereaper/nodereaper.toml"),
        "conffiles: {conffiles}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let text = std::fs::read_to_string(control.path().join(script)).expect(script);
        assert!(text.starts_with("#!/bin/sh"), "{script}");
    }
    let postinst = std::fs::read_to_string(control.path().join("postinst")).expect("postinst");
    assert!(postinst.contains("useradd --system"), "{postinst}");
}

#[test]
fn deb_passes_lintian() {
    check_lintian(&built().deb);
}

#[test]
fn deb_contents_modes_conffile_and_scripts() {
    check_deb_contents(&built().deb);
}

/// The glibc guard (Amazon Linux 2023 has 2.34): our binary passes it, and
/// the same binary is refused when the limit is set below what it needs.
#[test]
fn glibc_guard_passes_our_binary_and_refuses_a_newer_need() {
    let bin = env!("CARGO_BIN_EXE_nodereaper");
    let (passed, _, err) = run(package_sh().arg("check-glibc").arg(bin));
    assert!(passed, "{err}");
    assert!(err.contains("newest glibc symbol version 2."), "{err}");
    let (passed, _, err) = run(package_sh()
        .arg("check-glibc")
        .arg(bin)
        .env("NODEREAPER_MAX_GLIBC", "2.17"));
    assert!(!passed && err.contains("needs GLIBC_2."), "{err}");
}

#[path = "os_packages/docs.rs"]
mod docs;
#[path = "os_packages/scripts.rs"]
mod scripts;
