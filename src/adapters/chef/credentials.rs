//! Chef identity: which client name, server URL and private key to use.
//!
//! Reads the same `~/.chef/credentials` TOML file as `knife`/Chef Workstation:
//!
//! ```toml
//! [default]
//! client_name = "nodereaper"
//! client_key = "~/.chef/nodereaper.pem"    # or an inline PEM string
//! chef_server_url = "https://chef.example.com/organizations/acme"
//!
//! ['prod']
//! client_name = "nodereaper-prod"
//! client_key = "prod.pem"                  # relative paths are under ~/.chef
//! chef_server_url = "https://chef-prod.example.com/organizations/acme"
//! ```
//!
//! As in Chef, `node_name` is accepted in place of `client_name`, a
//! `client_key` starting with `-----BEGIN` is inline key material, and other
//! keys (`validation_*`, `knife`, ...) are ignored. Key material never appears
//! in errors or `Debug` output.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::auth::{AuthError, SigningKey};

/// Where the private key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PEM file on disk.
    Path(PathBuf),
    /// PEM text given directly (e.g. inline in the credentials file).
    InlinePem(String),
    /// An AWS Secrets Manager secret (id or ARN) holding the PEM: fetched
    /// by [`crate::adapters::secrets`], not by [`load_key`].
    SecretsManager(String),
    /// An SSM Parameter Store SecureString parameter (name or ARN) holding
    /// the PEM: fetched by [`crate::adapters::secrets`], not by [`load_key`].
    SsmParameter(String),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Path(p) => f.debug_tuple("Path").field(p).finish(),
            KeySource::InlinePem(_) => f.write_str("<inline PEM redacted>"),
            KeySource::SecretsManager(id) => f.debug_tuple("SecretsManager").field(id).finish(),
            KeySource::SsmParameter(name) => f.debug_tuple("SsmParameter").field(name).finish(),
        }
    }
}

impl fmt::Display for KeySource {
    /// `key file /path/x.pem` or `inline PEM key`; never the key itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Path(p) => write!(f, "key file {}", p.display()),
            KeySource::InlinePem(_) => f.write_str("inline PEM key"),
            KeySource::SecretsManager(id) => write!(f, "Secrets Manager secret {id}"),
            KeySource::SsmParameter(name) => write!(f, "SSM parameter {name}"),
        }
    }
}

/// The identity selected from a credentials profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Chef client (or user) name, sent as `X-Ops-Userid`.
    pub client_name: String,
    /// `chef_server_url`, usually including `/organizations/<org>`.
    pub server_url: String,
    /// The client's private key.
    pub key: KeySource,
}

/// Errors loading credentials or keys. Every message names the file (and the
/// profile/key where relevant) and what was expected; none contains key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The credentials file could not be read.
    #[error("cannot read Chef credentials file {}: {source}", .path.display())]
    Read {
        /// The credentials file.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The credentials file is not valid TOML.
    #[error(
        "Chef credentials file {} is not valid TOML (line {line}): {message}",
        .path.display()
    )]
    Parse {
        /// The credentials file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// Parser message (without the offending text, which may hold a key).
        message: String,
    },
    /// The requested profile does not exist.
    #[error(
        "profile '{profile}' not found in Chef credentials file {}; expected a ['{profile}'] \
         table (profiles present: {available})",
        .path.display()
    )]
    ProfileNotFound {
        /// The credentials file.
        path: PathBuf,
        /// Requested profile.
        profile: String,
        /// Comma-separated profile names found, or `none`.
        available: String,
    },
    /// A required key is absent from the profile.
    #[error(
        "profile '{profile}' in Chef credentials file {} is missing required key '{key}' \
         (expected e.g. {key} = {example})",
        .path.display()
    )]
    MissingKey {
        /// The credentials file.
        path: PathBuf,
        /// Profile name.
        profile: String,
        /// Missing key.
        key: &'static str,
        /// Example value.
        example: &'static str,
    },
    /// A key in the profile has an unusable value.
    #[error(
        "'{key}' in profile '{profile}' of Chef credentials file {} is invalid: expected {expected}",
        .path.display()
    )]
    InvalidValue {
        /// The credentials file.
        path: PathBuf,
        /// Profile name.
        profile: String,
        /// Offending key.
        key: &'static str,
        /// What a valid value looks like.
        expected: String,
    },
    /// The key file could not be read.
    #[error("cannot read key file {}: {source}", .path.display())]
    KeyRead {
        /// The key file.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is accessible to group/others.
    #[error(
        "key file {path} is readable by group/others (mode {mode:04o}); run chmod 600 {path} \
         or set chef.allow_insecure_key_permissions = true",
        path = .path.display()
    )]
    InsecureKeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Permission bits (`mode & 0o7777`).
        mode: u32,
    },
    /// The key lives in an AWS secret store: [`crate::adapters::secrets`] fetches it.
    #[error("{origin} is fetched from AWS (nodereaper::adapters::secrets), not loaded from disk")]
    RemoteKey {
        /// `Secrets Manager secret ID` or `SSM parameter NAME`.
        origin: String,
    },
    /// A plain `http://` server URL without `chef.allow_plain_http`.
    #[error(
        "{origin}: expected an https:// Chef server URL, got {url:?}: plain http sends signed \
         requests and node data in clear text; set chef.allow_plain_http = true for a local test server"
    )]
    PlainHttp {
        /// Where the URL came from (`chef.server_url`, or the profile and file).
        origin: String,
        /// The URL.
        url: String,
    },
    /// The key material is not a usable RSA private key.
    #[error("{origin}: {source}")]
    InvalidKey {
        /// `key file <path>` or `inline PEM key`.
        origin: String,
        /// Why parsing failed.
        #[source]
        source: AuthError,
    },
}

/// The plain-http guard for the Chef server URL, wherever it came from
/// (`origin`: `chef.server_url`, or a credentials profile): `http://` only
/// with `chef.allow_plain_http`, and then with a warning on every use.
pub fn require_https(
    url: &str,
    origin: &str,
    allow_plain_http: bool,
) -> Result<(), CredentialsError> {
    let plain = url::Url::parse(url).map_or_else(
        |_| url.to_ascii_lowercase().starts_with("http:"),
        |u| u.scheme() == "http",
    );
    if !plain {
        return Ok(());
    }
    if !allow_plain_http {
        return Err(CredentialsError::PlainHttp {
            origin: origin.to_string(),
            url: url.to_string(),
        });
    }
    tracing::warn!(
        server_url = url,
        origin,
        "chef.allow_plain_http: talking to the Chef server over plain http; signed requests and node data travel in clear text (local test servers only)"
    );
    Ok(())
}

/// `~/.chef/credentials`, or `None` if the home directory is unknown. (Chef
/// also honours `$CHEF_CREDENTIALS_FILE`; that is left to the caller.)
pub fn default_credentials_path() -> Option<PathBuf> {
    std::env::home_dir().map(|h| h.join(".chef").join("credentials"))
}

/// Loads profile `profile` (Chef's default is `"default"`) from the
/// credentials file at `path`.
///
/// `client_name` (or its alias `node_name`), `client_key` and
/// `chef_server_url` are required; other keys are ignored. A `client_key`
/// path may start with `~/`; relative paths are resolved against `~/.chef`,
/// as Chef does. The key itself is not read here: see [`load_key`].
pub fn load_profile(path: &Path, profile: &str) -> Result<Credentials, CredentialsError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_profile(&text, path, profile, std::env::home_dir().as_deref())
}

/// Loads and parses the private key from `source`.
///
/// A key file whose permissions grant any access to group or others
/// (`mode & 0o077 != 0`) is refused unless `allow_insecure_permissions` is
/// set. A leading `~/` in a path is expanded to the home directory.
pub fn load_key(
    source: &KeySource,
    allow_insecure_permissions: bool,
) -> Result<SigningKey, CredentialsError> {
    match source {
        KeySource::InlinePem(pem) => {
            SigningKey::from_pem(pem).map_err(|source| CredentialsError::InvalidKey {
                origin: source_origin(None),
                source,
            })
        }
        KeySource::Path(path) => {
            let path = match (path.strip_prefix("~"), std::env::home_dir()) {
                (Ok(rest), Some(home)) => home.join(rest),
                _ => path.clone(),
            };
            let pem = read_key_file(&path, allow_insecure_permissions)?;
            SigningKey::from_pem(&pem).map_err(|source| CredentialsError::InvalidKey {
                origin: source_origin(Some(&path)),
                source,
            })
        }
        KeySource::SecretsManager(_) | KeySource::SsmParameter(_) => {
            Err(CredentialsError::RemoteKey {
                origin: source.to_string(),
            })
        }
    }
}

fn source_origin(path: Option<&Path>) -> String {
    match path {
        Some(p) => KeySource::Path(p.to_path_buf()).to_string(),
        None => KeySource::InlinePem(String::new()).to_string(),
    }
}

/// Opens the file, checks its mode on the open handle, then reads it.
fn read_key_file(path: &Path, allow_insecure: bool) -> Result<String, CredentialsError> {
    let key_read = |source| CredentialsError::KeyRead {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(key_read)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(key_read)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 && !allow_insecure {
            return Err(CredentialsError::InsecureKeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = allow_insecure;
    let mut pem = String::new();
    file.read_to_string(&mut pem).map_err(key_read)?;
    Ok(pem)
}

/// Parses `text` (the contents of `path`) and extracts `profile`; `home`
/// resolves `~` and relative key paths.
fn parse_profile(
    text: &str,
    path: &Path,
    profile: &str,
    home: Option<&Path>,
) -> Result<Credentials, CredentialsError> {
    let doc = parse_toml(text, path)?;
    let p = Profile {
        table: select_profile(&doc, path, profile)?,
        path,
        name: profile,
    };
    let client_name = p.client_name()?;
    let server_url = p.server_url()?;
    let key = p.key_source(home)?;
    Ok(Credentials {
        client_name,
        server_url,
        key,
    })
}

/// The credentials file as a TOML table; errors carry the line, never the text.
fn parse_toml(text: &str, path: &Path) -> Result<toml::Table, CredentialsError> {
    toml::from_str(text).map_err(|e| CredentialsError::Parse {
        path: path.to_path_buf(),
        line: e.span().map_or(1, |s| {
            text[..s.start.min(text.len())].matches('\n').count() + 1
        }),
        message: e.message().trim().to_string(),
    })
}

/// The table of `profile`, or an error listing the profiles present.
fn select_profile<'d>(
    doc: &'d toml::Table,
    path: &Path,
    profile: &str,
) -> Result<&'d toml::Table, CredentialsError> {
    if let Some(toml::Value::Table(t)) = doc.get(profile) {
        return Ok(t);
    }
    let names: Vec<&str> = doc
        .iter()
        .filter(|(_, v)| v.is_table())
        .map(|(k, _)| k.as_str())
        .collect();
    Err(CredentialsError::ProfileNotFound {
        path: path.to_path_buf(),
        profile: profile.to_string(),
        available: if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        },
    })
}

/// One profile of a credentials file, read key by key.
struct Profile<'a> {
    table: &'a toml::Table,
    path: &'a Path,
    name: &'a str,
}

impl Profile<'_> {
    fn invalid(&self, key: &'static str, expected: &str) -> CredentialsError {
        CredentialsError::InvalidValue {
            path: self.path.to_path_buf(),
            profile: self.name.to_string(),
            key,
            expected: expected.to_string(),
        }
    }

    /// The non-empty string `key`, if present.
    fn get(&self, key: &'static str) -> Result<Option<String>, CredentialsError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(toml::Value::String(_)) => Err(self.invalid(key, "a non-empty string")),
            Some(toml::Value::Table(t)) if t.contains_key("secret") => Err(self.invalid(
                key,
                "a plain string (secrets-provider references are not supported)",
            )),
            Some(_) => Err(self.invalid(key, "a string")),
        }
    }

    /// The non-empty string `key`; its absence is an error showing `example`.
    fn require(
        &self,
        key: &'static str,
        example: &'static str,
    ) -> Result<String, CredentialsError> {
        self.get(key)?.ok_or_else(|| CredentialsError::MissingKey {
            path: self.path.to_path_buf(),
            profile: self.name.to_string(),
            key,
            example,
        })
    }

    /// `client_name`, or its alias `node_name` (not both).
    fn client_name(&self) -> Result<String, CredentialsError> {
        match (self.get("client_name")?, self.get("node_name")?) {
            (Some(_), Some(_)) => Err(self.invalid(
                "client_name",
                "only one of client_name and node_name (Chef prefers client_name)",
            )),
            (Some(name), None) | (None, Some(name)) => Ok(name),
            (None, None) => self.require("client_name", "\"my-client\""),
        }
    }

    /// `chef_server_url`, an http(s) URL with a host.
    fn server_url(&self) -> Result<String, CredentialsError> {
        let server_url = self.require(
            "chef_server_url",
            "\"https://chef.example.com/organizations/myorg\"",
        )?;
        match url::Url::parse(&server_url) {
            Ok(u) if matches!(u.scheme(), "https" | "http") && u.has_host() => Ok(server_url),
            _ => Err(self.invalid(
                "chef_server_url",
                "an http(s) URL such as https://chef.example.com/organizations/myorg",
            )),
        }
    }

    /// `client_key`: inline PEM, or a path (`~/`, absolute, or relative to
    /// `~/.chef`).
    fn key_source(&self, home: Option<&Path>) -> Result<KeySource, CredentialsError> {
        let raw_key = self.require("client_key", "\"~/.chef/my-client.pem\"")?;
        if raw_key.trim_start().starts_with("-----BEGIN") {
            return Ok(KeySource::InlinePem(raw_key));
        }
        let no_home = || {
            self.invalid(
                "client_key",
                "an absolute path (the home directory is unknown, so ~ and relative paths \
                 cannot be resolved)",
            )
        };
        let p = Path::new(&raw_key);
        Ok(KeySource::Path(if let Ok(rest) = p.strip_prefix("~") {
            home.ok_or_else(no_home)?.join(rest)
        } else if raw_key.starts_with('~') {
            return Err(self.invalid(
                "client_key",
                "a path starting with ~/ or an absolute path (~user is not supported)",
            ));
        } else if p.is_absolute() {
            p.to_path_buf()
        } else {
            home.ok_or_else(no_home)?.join(".chef").join(p)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::auth::TEST_PRIVATE_KEY_PEM;
    use super::*;

    const FILE: &str = r#"
top_level_setting = "ignored"

[default]
client_name = "reaper"
client_key = "~/.chef/reaper.pem"
chef_server_url = "https://chef.example.com/organizations/acme"
validation_client_name = "acme-validator"
validation_key = "/etc/chef/validator.pem"

['prod']
node_name = "reaper-prod"
client_key = "prod.pem"
chef_server_url = "https://chef-prod.example.com/organizations/acme"
knife = { ssh_user = "ubuntu" }
some_unknown_key = 42

[nourl]
client_name = "x"
client_key = "/abs/x.pem"
"#;

    fn parse(text: &str, profile: &str) -> Result<Credentials, CredentialsError> {
        parse_profile(
            text,
            Path::new("/h/.chef/credentials"),
            profile,
            Some(Path::new("/h")),
        )
    }

    #[test]
    fn selects_profiles_and_resolves_paths() {
        let d = parse(FILE, "default").unwrap();
        assert_eq!(d.client_name, "reaper");
        assert_eq!(d.server_url, "https://chef.example.com/organizations/acme");
        assert_eq!(d.key, KeySource::Path("/h/.chef/reaper.pem".into()));

        let p = parse(FILE, "prod").unwrap();
        assert_eq!(p.client_name, "reaper-prod");
        assert_eq!(
            p.server_url,
            "https://chef-prod.example.com/organizations/acme"
        );
        assert_eq!(p.key, KeySource::Path("/h/.chef/prod.pem".into()));
    }

    #[test]
    fn tilde_and_absolute_paths() {
        let mk = |key: &str| {
            format!(
                "[default]\nclient_name = \"a\"\nchef_server_url = \"https://c/organizations/o\"\nclient_key = \"{key}\"\n"
            )
        };
        let key = |k: &str| parse(&mk(k), "default").map(|c| c.key);
        assert_eq!(
            key("~/keys/a.pem").unwrap(),
            KeySource::Path("/h/keys/a.pem".into())
        );
        assert_eq!(
            key("/etc/a.pem").unwrap(),
            KeySource::Path("/etc/a.pem".into())
        );
        assert_eq!(
            key("sub/a.pem").unwrap(),
            KeySource::Path("/h/.chef/sub/a.pem".into())
        );
        let msg = key("~bob/a.pem").unwrap_err().to_string();
        assert!(msg.contains("~user is not supported"), "{msg}");
        let no_home = parse_profile(&mk("~/a.pem"), Path::new("/c"), "default", None);
        assert!(no_home
            .unwrap_err()
            .to_string()
            .contains("home directory is unknown"));
    }

    #[test]
    fn missing_profile_lists_available() {
        let msg = parse(FILE, "staging").unwrap_err().to_string();
        assert!(msg.contains("/h/.chef/credentials"), "{msg}");
        assert!(msg.contains("'staging'"), "{msg}");
        for name in ["default", "prod", "nourl"] {
            assert!(msg.contains(name), "{msg}");
        }
        // A top-level string is not a profile.
        assert!(parse(FILE, "top_level_setting").is_err());
    }

    #[test]
    fn missing_key_names_file_profile_and_key() {
        let msg = parse(FILE, "nourl").unwrap_err().to_string();
        assert!(msg.contains("/h/.chef/credentials"), "{msg}");
        assert!(msg.contains("profile 'nourl'"), "{msg}");
        assert!(
            msg.contains("missing required key 'chef_server_url'"),
            "{msg}"
        );

        let no_name = "[default]\nclient_key = \"/k.pem\"\nchef_server_url = \"https://c\"\n";
        let msg = parse(no_name, "default").unwrap_err().to_string();
        assert!(msg.contains("'client_name'"), "{msg}");
    }

    #[test]
    fn invalid_values_rejected() {
        let both = "[default]\nclient_name = \"a\"\nnode_name = \"b\"\nclient_key = \"/k\"\nchef_server_url = \"https://c\"\n";
        assert!(parse(both, "default")
            .unwrap_err()
            .to_string()
            .contains("node_name"));
        let bad_url = "[default]\nclient_name = \"a\"\nclient_key = \"/k\"\nchef_server_url = \"chef.example.com\"\n";
        let msg = parse(bad_url, "default").unwrap_err().to_string();
        assert!(
            msg.contains("'chef_server_url'") && msg.contains("http(s) URL"),
            "{msg}"
        );
        let not_string =
            "[default]\nclient_name = 3\nclient_key = \"/k\"\nchef_server_url = \"https://c\"\n";
        assert!(parse(not_string, "default")
            .unwrap_err()
            .to_string()
            .contains("expected a string"));
    }

    #[test]
    fn parse_error_does_not_echo_file_content() {
        let text = format!(
            "[default]\nclient_name = \"a\"\nclient_key = '''{TEST_PRIVATE_KEY_PEM}'''\nchef_server_url = = \"x\"\n"
        );
        let line = text.lines().position(|l| l.contains("= =")).unwrap() + 1;
        let msg = parse(&text, "default").unwrap_err().to_string();
        assert!(
            msg.contains(&format!("not valid TOML (line {line})")),
            "{msg}"
        );
        assert!(!msg.contains("MII"), "{msg}");
    }

    #[test]
    fn inline_pem_profile_and_redaction() {
        let text = format!(
            "[default]\nclient_name = \"a\"\nchef_server_url = \"https://c/organizations/o\"\nclient_key = \"\"\"\n{TEST_PRIVATE_KEY_PEM}\"\"\"\n"
        );
        let creds = parse(&text, "default").unwrap();
        assert!(matches!(creds.key, KeySource::InlinePem(_)));
        assert_eq!(format!("{:?}", creds.key), "<inline PEM redacted>");
        let dbg = format!("{creds:?}");
        assert!(!dbg.contains("MII") && !dbg.contains("BEGIN"), "{dbg}");
        load_key(&creds.key, false).unwrap();

        let msg = load_key(&KeySource::InlinePem("garbage".into()), false)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("inline PEM key: invalid private key"),
            "{msg}"
        );
    }

    #[test]
    fn load_profile_reads_file_and_reports_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, FILE).unwrap();
        assert_eq!(
            load_profile(&path, "prod").unwrap().client_name,
            "reaper-prod"
        );
        let missing = dir.path().join("nope");
        let msg = load_profile(&missing, "default").unwrap_err().to_string();
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.pem");
        std::fs::write(&path, TEST_PRIVATE_KEY_PEM).unwrap();
        let src = KeySource::Path(path.clone());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let msg = load_key(&src, false).unwrap_err().to_string();
        let p = path.display();
        assert_eq!(
            msg,
            format!(
                "key file {p} is readable by group/others (mode 0644); run chmod 600 {p} \
                 or set chef.allow_insecure_key_permissions = true"
            )
        );
        load_key(&src, true).unwrap();

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        load_key(&src, false).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        load_key(&src, false).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn key_file_errors_name_the_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let msg = load_key(&KeySource::Path(missing.clone()), false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&missing.display().to_string()), "{msg}");

        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN PUBLIC KEY-----\nMIIBsecret\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        let msg = load_key(&KeySource::Path(bad.clone()), false)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(&format!("key file {}: ", bad.display())),
            "{msg}"
        );
        assert!(msg.contains("public key") && !msg.contains("MIIB"), "{msg}");
    }
}
