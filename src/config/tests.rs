//! Tests of loading, environment overrides and validation.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    let cfg = Config::parse(text, Path::new("/etc/nodereaper.toml"))?;
    cfg.validate(Path::new("/etc/nodereaper.toml"))?;
    Ok(cfg)
}

#[test]
fn empty_file_gives_safe_defaults() {
    let cfg = parse("").expect("defaults");
    assert!(cfg.pipeline.verify_instance_state);
    assert!(!cfg.pipeline.dry_run);
    assert_eq!(cfg.chef.sign_version, SignVersion::V1_3);
    assert_eq!(cfg.pipeline.wait_time, Duration::from_secs(20));
    assert_eq!(cfg.sweep.max_candidate_share, 0.2);
}

#[test]
fn plain_http_needs_an_explicit_opt_in() {
    let err = parse("[chef]\nserver_url = \"http://chef.example\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("chef.server_url") && err.contains("allow_plain_http"),
        "{err}"
    );
    parse("[chef]\nserver_url = \"http://127.0.0.1:4545\"\nallow_plain_http = true\n")
        .expect("opted in");
    parse("[chef]\nserver_url = \"https://chef.example\"\n").expect("https");
}

#[test]
fn huge_durations_are_errors_not_panics() {
    for (key, text) in [
        ("sweep.grace_period", "[sweep]\ngrace_period = \"200y\"\n"),
        ("sweep.interval", "[sweep]\ninterval = \"400d\"\n"),
        ("chef.timeout", "[chef]\ntimeout = \"2h\"\n"),
        (
            "pipeline.storm_brake_after",
            "[pipeline]\nstorm_brake_after = \"30d\"\n",
        ),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains("at most"), "{err}");
    }
}

#[test]
fn accounts_are_validated() {
    let ok = "[[aws.accounts]]\nid = \"111111111111\"\nrole_arn = \"arn:aws:iam::111111111111:role/r\"\n";
    assert_eq!(parse(ok).expect("valid").aws.accounts.len(), 1);
    let bad_id = ok.replace("\"111111111111\"\nrole", "\"1111\"\nrole");
    let err = parse(&bad_id).unwrap_err().to_string();
    assert!(err.contains("aws.accounts[0].id"), "{err}");
    let bad_role = ok.replace(":role/r", ":user/r");
    let err = parse(&bad_role).unwrap_err().to_string();
    assert!(err.contains("aws.accounts[0].role_arn"), "{err}");
    let twice = format!("{ok}{ok}");
    let err = parse(&twice).unwrap_err().to_string();
    assert!(err.contains("aws.accounts[1].id"), "{err}");
}

#[test]
fn role_arn_must_belong_to_its_account() {
    // A role of another account: that account's instances would be looked
    // up there, where each is "unknown", which counts as gone.
    let other = "[[aws.accounts]]\nid = \"111111111111\"\nrole_arn = \"arn:aws:iam::222222222222:role/nodereaper\"\n";
    let err = parse(other).unwrap_err().to_string();
    assert!(
        err.contains("aws.accounts[0].role_arn")
            && err.contains("111111111111")
            && err.contains("222222222222"),
        "{err}"
    );
    // Its happy twin: the same role in the entry's own account, in any
    // partition and with a role path.
    for arn in [
        "arn:aws:iam::111111111111:role/nodereaper",
        "arn:aws-cn:iam::111111111111:role/ops/nodereaper",
    ] {
        let ok = other.replace("arn:aws:iam::222222222222:role/nodereaper", arn);
        parse(&ok).expect(arn);
    }
    // Not an account field at all.
    for arn in [
        "arn:aws:iam::11111111111:role/r",
        "arn:aws:iam:us-east-1:111111111111:role/r",
        "arn:aws:iam::111111111111:role/",
    ] {
        let bad = other.replace("arn:aws:iam::222222222222:role/nodereaper", arn);
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("aws.accounts[0].role_arn"), "{arn}: {err}");
    }
}

#[test]
fn unknown_key_names_file_and_key() {
    let err = parse("[pipeline]\nworkerz = 3\n").unwrap_err().to_string();
    assert!(err.contains("/etc/nodereaper.toml"), "{err}");
    assert!(err.contains("workerz"), "{err}");
}

#[test]
fn wrong_type_names_key() {
    let err = parse("[pipeline]\nworkers = \"many\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("workers"), "{err}");
}

#[test]
fn validation_names_key_and_expectation() {
    let err = parse("[pipeline]\nbatch_size = 11\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("pipeline.batch_size"), "{err}");
    assert!(err.contains("1 to 10"), "{err}");
    let err = parse("[chef]\nsearch_query = \"name:foo\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("chef.search_query"), "{err}");
    let err = parse("[protect]\nnode_names = [\"[oops\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("protect.node_names[0]"), "{err}");
}

#[test]
fn bad_listen_address_is_an_error_not_a_default() {
    let mut cfg = Config::default();
    let err = cfg
        .apply_env(|k| (k == "NODEREAPER_LISTEN").then(|| ":9797".to_string()))
        .expect_err("must refuse")
        .to_string();
    assert!(
        err.contains("NODEREAPER_LISTEN") && err.contains("off"),
        "{err}"
    );
    let cfg = parse("[http]\nlisten = \"off\"\n").expect("off");
    assert_eq!(cfg.http.listen, None);
    let err = parse("[http]\nlisten = \"nowhere\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("listen"), "{err}");
}

#[test]
fn zero_periods_are_refused() {
    let err = parse("[pipeline]\nlifecycle_heartbeat_interval = \"0s\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pipeline.lifecycle_heartbeat_interval"),
        "{err}"
    );
    let err = parse("[sweep]\ninterval = \"0s\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("sweep.interval"), "{err}");
}

#[test]
fn durations_are_human() {
    let cfg = parse("[sweep]\ninterval = \"6h\"\ngrace_period = \"90m\"\n").expect("parse");
    assert_eq!(cfg.sweep.interval, Some(Duration::from_secs(6 * 3600)));
    assert_eq!(cfg.sweep.grace_period, Duration::from_secs(90 * 60));
}

#[test]
fn env_overrides_paths_and_secrets() {
    let mut cfg = Config::default();
    cfg.chef.client_key_pem = Some("inline from the file".into());
    cfg.apply_env(|k| match k {
        "NODEREAPER_CHEF_CLIENT_KEY" => Some("/run/secrets/key.pem".into()),
        "NODEREAPER_QUEUE_URL" => Some("http://127.0.0.1:5000/123/q".into()),
        "NODEREAPER_LISTEN" => Some("off".into()),
        _ => None,
    })
    .expect("valid environment");
    assert_eq!(
        cfg.chef.client_key,
        Some(PathBuf::from("/run/secrets/key.pem"))
    );
    assert_eq!(
        cfg.chef.client_key_pem, None,
        "the environment's key replaces the file's"
    );
    assert_eq!(cfg.queues.len(), 1);
    assert_eq!(cfg.http.listen, None);
}

#[test]
fn key_from_a_secret_store() {
    let mut cfg = parse("[chef]\nclient_key = \"/etc/k.pem\"\n").expect("parse");
    cfg.apply_env(|k| {
        (k == "NODEREAPER_CHEF_CLIENT_KEY_SECRET").then(|| "arn:aws:secretsmanager:x".into())
    })
    .expect("valid environment");
    assert_eq!(cfg.chef.client_key, None, "the environment's key wins");
    assert_eq!(
        cfg.chef.client_key_secret.as_deref(),
        Some("arn:aws:secretsmanager:x")
    );
    let err = Config::default()
        .apply_env(|k| {
            matches!(
                k,
                "NODEREAPER_CHEF_CLIENT_KEY_SECRET" | "NODEREAPER_CHEF_CLIENT_KEY_PARAMETER"
            )
            .then(|| "x".into())
        })
        .expect_err("two key sources")
        .to_string();
    assert!(
        err.contains("NODEREAPER_CHEF_CLIENT_KEY_SECRET, NODEREAPER_CHEF_CLIENT_KEY_PARAMETER"),
        "{err}"
    );
    let err = parse("[chef]\nclient_key = \"/k\"\nclient_key_parameter = \"/p\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("chef.client_key_parameter")
            && err.contains("not client_key and client_key_parameter"),
        "{err}"
    );
    let err = parse("[chef]\nclient_key_secret = \" \"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("chef.client_key_secret"), "{err}");
}

#[test]
fn require_acl_backup_defaults_to_false_and_must_be_a_boolean() {
    assert!(!parse("").expect("defaults").journal.require_acl_backup);
    let cfg = parse("[journal]\nrequire_acl_backup = true\n").expect("true");
    assert!(cfg.journal.require_acl_backup);
    let err = parse("[journal]\nrequire_acl_backup = \"yes\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("require_acl_backup"), "{err}");
}
