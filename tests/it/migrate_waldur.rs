//! The switch from waldur-site-agent's report mode: its example YAML (tests/fixtures/waldur-site-agent,
//! see PROVENANCE.md there) → one `[sinks.waldur]` fragment per offering it can report (snapshot);
//! a fragment, its offering UUID filled in, passes `config check`; no secret of the YAML is ever
//! printed or written; bad input exits 2 naming the file and the fix.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::fixture;

const SAMPLE: &str = "config.yaml.example";
const UUID: &str = "d42a18b6b8ba4c2bb0591b3ff8fb181d";

fn slurm_ledger(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"));
    c.current_dir(dir)
        .args(args)
        .env_remove("SLURM_LEDGER_CONFIG")
        .env_remove("SLURM_LEDGER_DB")
        .env_remove("SLURM_LEDGER_WALDUR_TOKEN")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    let Output { status, stdout, stderr } = c.output().expect("run slurm-ledger");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn migrate(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["migrate", "waldur-site-agent", "--config", SAMPLE];
    args.extend_from_slice(extra);
    slurm_ledger(dir, &args, &[])
}

/// A copy of the sample in a fresh directory, changed by `edit`.
fn sample_copy(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("waldur-site-agent").join(SAMPLE)).unwrap();
    std::fs::write(dir.path().join(SAMPLE), edit(text)).unwrap();
    dir
}

/// The sample as waldur-site-agent ships it: three Slurm offerings with usage components, each its
/// own fragment (every one valid TOML alone); the prepaid (`one`) and MOAB offerings refused by
/// name; exit 3 because the sample's UUIDs are empty (placeholders to fill in).
#[test]
fn the_sample_prints_one_fragment_per_offering() {
    let (code, out, err) = migrate(&fixture("waldur-site-agent"), &[]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.is_empty(), "notes go to stdout as # comments: {err}");
    insta::assert_snapshot!("sample", out);

    let fragments: Vec<&str> = out.split("\n# --- offering ").skip(1).collect();
    assert_eq!(fragments.len(), 3, "{out}");
    for (f, name) in fragments.iter().zip(["Example SLURM Offering", "Discoverer CPU", "Discoverer+ GPU"]) {
        assert!(f.starts_with(&format!("{name:?} (uuid not set)")), "{f}");
        let table: toml::Table = toml::from_str(f.split_once('\n').unwrap().1).unwrap_or_else(|e| panic!("{e}\n{f}"));
        assert!(table["sinks"]["waldur"]["components"].as_table().is_some_and(|c| !c.is_empty()), "{f}");
    }
    assert!(out.contains("slurm-ledger reports ONE Waldur offering per config"), "{out}");
    for refused in ["\"Prepaid HPC Allocation\" (uuid not set): no `usage` component", "\"Example MOAB Offering\""] {
        assert!(out.contains(refused), "{refused} not named:\n{out}");
    }
    // One offering alone is a config fragment as printed.
    let (code, one, _) = migrate(&fixture("waldur-site-agent"), &["--offering", "Discoverer+ GPU"]);
    assert_eq!(code, 3);
    let table: toml::Table = toml::from_str(&one).unwrap();
    let comps = table["sinks"]["waldur"]["components"].as_table().unwrap();
    assert_eq!(comps.keys().collect::<Vec<_>>(), ["billing", "gres/gpu"]);
    assert_eq!(comps["gres/gpu"]["unit_factor"].as_integer(), Some(1));
}

/// The first offering with its UUID and a token: written with --out (exit 0), then that file
/// under a ledger section passes `config check` (the token from the environment, as the printed
/// step says it may be). --out refuses an existing file unless --force; --dry-run writes nothing.
#[test]
fn a_fragment_with_its_uuid_passes_config_check() {
    let dir = sample_copy(|t| {
        t.replacen("waldur_offering_uuid: \"\"", &format!("waldur_offering_uuid: \"{UUID}\""), 1).replacen(
            "waldur_api_token: \"\"",
            "waldur_api_token: \"tok-0123\"",
            1,
        )
    });
    let frag = dir.path().join("waldur.toml");
    let (code, out, err) = migrate(dir.path(), &["--offering", UUID, "--out", "waldur.toml", "--dry-run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!frag.exists() && err.contains("dry run: waldur.toml not written"), "{err}");
    assert!(out.contains("[sinks.waldur]") && out.contains(&format!("offering_uuid = \"{UUID}\"")), "{out}");

    let (code, out, err) = migrate(dir.path(), &["--offering", "Example SLURM Offering", "--out", "waldur.toml"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("wrote waldur.toml") && out.contains("write the token"), "{out}");
    let written = std::fs::read_to_string(&frag).unwrap();
    assert!(written.contains("token_file = \"/etc/slurm-ledger/waldur.token\""), "{written}");
    assert!(written.contains("basis = \"requested\"") && written.contains("unit_factor = 61440"), "{written}");

    let (code, _, err) = migrate(dir.path(), &["--offering", "Example SLURM Offering", "--out", "waldur.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("waldur.toml exists") && err.contains("--force"), "{err}");
    let (code, _, err) =
        migrate(dir.path(), &["--offering", "Example SLURM Offering", "--out", "waldur.toml", "--force"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = migrate(dir.path(), &["--out", "waldur.toml", "--force"]);
    assert_eq!(code, 2, "several offerings and --out");
    assert!(err.contains("give --offering NAME|UUID with --out"), "{err}");

    let cfg = dir.path().join("slurm-ledger.toml");
    let ledger = dir.path().join("ledger.db");
    std::fs::write(
        &cfg,
        format!("[slurm]\nclusters = [\"testcluster\"]\n[ledger]\npath = \"{}\"\n\n{written}", ledger.display()),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let check = |env: &[(&str, &str)]| slurm_ledger(dir.path(), &["config", "check", "--config", &cfg], env);
    let (code, out, err) = check(&[("SLURM_LEDGER_WALDUR_TOKEN", "tok-0123")]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(": OK"), "{out}");
    // Without the token (the file is not written yet), the check says where it goes.
    let (code, _, err) = check(&[]);
    assert_eq!(code, 2);
    assert!(err.contains("/etc/slurm-ledger/waldur.token"), "{err}");
    assert!(!err.contains("tok-0123"), "{err}");
}

/// A recognisable token, OIDC secret, LDAP password and Sentry DSN in the YAML: none is in any
/// output, stdout or stderr, of any use (all, one, --out, a refused offering, a YAML broken right
/// after the token), nor in a written file.
#[test]
fn no_secret_of_the_yaml_appears_anywhere() {
    const SECRETS: [&str; 4] = ["tok-RECOGNISABLE-77", "ldap-pw-RECOGNISABLE", "oidc-RECOGNISABLE", "dsn-RECOGNISABLE"];
    let with_secrets = |t: String| {
        t.replace("waldur_api_token: \"\"", &format!("waldur_api_token: \"{}\"", SECRETS[0]))
            .replace("bind_password: \"secret\"", &format!("bind_password: \"{}\"", SECRETS[1]))
            .replace("# oidc_client_secret: \"\"", &format!("oidc_client_secret: \"{}\"", SECRETS[2]))
            .replace("sentry_dsn: \"\"", &format!("sentry_dsn: \"https://{}@sentry.example.org/1\"", SECRETS[3]))
    };
    let dir = sample_copy(with_secrets);
    let text = std::fs::read_to_string(dir.path().join(SAMPLE)).unwrap();
    assert!(SECRETS.iter().all(|s| text.contains(s)), "the sample changed: {text}");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, text.replacen(&format!("\"{}\"", SECRETS[0]), &format!("\"{}\" ]", SECRETS[0]), 1))
        .unwrap();
    let broken = broken.display().to_string();
    let runs: [&[&str]; 6] = [
        &["--config", SAMPLE],
        &["--config", SAMPLE, "--offering", "Discoverer CPU"],
        &["--config", SAMPLE, "--offering", "Example MOAB Offering"],
        &["--config", SAMPLE, "--offering", "Example SLURM Offering", "--out", "out.toml"],
        &["--config", SAMPLE, "--offering", "nope"],
        &["--config", &broken],
    ];
    for args in runs {
        let args: Vec<&str> = ["migrate", "waldur-site-agent"].iter().chain(args).copied().collect();
        let (code, out, err) = slurm_ledger(dir.path(), &args, &[]);
        assert!([0, 2, 3].contains(&code), "{args:?}: {code}\n{err}");
        for s in SECRETS {
            assert!(!out.contains(s) && !err.contains(s), "{args:?} shows {s}:\n{out}\n{err}");
        }
        if args[3..] == [SAMPLE] {
            assert!(out.contains("write the token (the YAML's waldur_api_token, not copied here)"), "{out}");
            assert!(
                out.contains("oidc_client_secret: OIDC client credentials: not used, as waldur_api_token is set"),
                "{out}"
            );
        }
        if args.last() == Some(&broken.as_str()) {
            assert!(err.contains("is not valid YAML: line "), "{err}");
        }
    }
    let written = std::fs::read_to_string(dir.path().join("out.toml")).unwrap();
    assert!(SECRETS.iter().all(|s| !written.contains(s)), "{written}");
}

/// Without a token, the site agent's OIDC client credentials are carried over: the URL and the
/// client id as they are, the secret never: the table names the file it goes into, which
/// `config check` takes once the file is there.
#[test]
fn oidc_credentials_are_carried_over_and_the_secret_never_shown() {
    const SECRET: &str = "oidc-RECOGNISABLE-42";
    let dir = sample_copy(|t| {
        t.replace(
            "# oidc_token_url: \"\"",
            "oidc_token_url: \"https://kc.example.org/realms/hpc/protocol/openid-connect/token\"",
        )
        .replace("# oidc_client_id: \"\"", "oidc_client_id: \"site-agent\"")
        .replace("# oidc_client_secret: \"\"", &format!("oidc_client_secret: \"{SECRET}\""))
    });
    let args =
        ["migrate", "waldur-site-agent", "--config", SAMPLE, "--offering", "Example SLURM Offering", "--out", "w.toml"];
    let (code, out, err) = slurm_ledger(dir.path(), &args, &[]);
    assert!([0, 3].contains(&code), "{code}\n{out}\n{err}");
    let written = std::fs::read_to_string(dir.path().join("w.toml")).unwrap();
    for text in [&out, &err, &written] {
        assert!(!text.contains(SECRET), "{text}");
    }
    assert!(
        written.contains("oidc_token_url = \"https://kc.example.org/realms/hpc/protocol/openid-connect/token\"")
            && written.contains("oidc_client_id = \"site-agent\"")
            && written.contains("oidc_client_secret_file = \"/etc/slurm-ledger/waldur-oidc.secret\"")
            && !written.contains("token_file"),
        "{written}"
    );
    assert!(written.contains("write the client secret (the YAML's oidc_client_secret, not copied here)"), "{written}");
}

#[test]
fn bad_input_exits_2_naming_the_file_and_the_fix() {
    let dir = sample_copy(|t| t);
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("syntax.yaml", "timezone: UTC\nofferings:\n  - name: a\n    backend_components: {cpu: [}\n");
    write("none.yaml", "timezone: UTC\nreporting_periods: 2\n");
    write("moab.yaml", "offerings:\n  - name: m\n    backend_type: moab\n");
    for (file, says) in [
        ("missing.yaml", "cannot read waldur-site-agent's config missing.yaml"),
        ("syntax.yaml", "waldur-site-agent's config syntax.yaml is not valid YAML: line 4, column"),
        ("none.yaml", "none.yaml has no offerings: no `offerings` key"),
        ("moab.yaml", "moab.yaml has no offering slurm-ledger can report"),
    ] {
        let (code, out, err) = slurm_ledger(dir.path(), &["migrate", "waldur-site-agent", "--config", file], &[]);
        assert_eq!(code, 2, "{file}: {out}\n{err}");
        assert!(err.contains(says), "{file}: {err}");
        assert!(out.is_empty(), "{file}: {out}");
    }
    let (code, _, err) = slurm_ledger(dir.path(), &["migrate", "waldur-site-agent"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("give waldur-site-agent's YAML config: --config FILE"), "{err}");
    // SLURM_LEDGER_CONFIG names slurm-ledger's config, never the site agent's.
    let (code, _, err) =
        slurm_ledger(dir.path(), &["migrate", "waldur-site-agent"], &[("SLURM_LEDGER_CONFIG", SAMPLE)]);
    assert_eq!(code, 2);
    assert!(err.contains("SLURM_LEDGER_CONFIG names slurm-ledger's config"), "{err}");
}
