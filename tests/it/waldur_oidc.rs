//! `deliver` to the Waldur fake with OIDC client credentials instead of a token: the fake's OIDC
//! token endpoint issues Bearer tokens; totals are exact; one token serves a whole pass; a token
//! revoked mid-pass is renewed once on Waldur's 401 and delivery goes on; a wrong client secret is
//! named with the token URL, never shown; a secret file others can read is used with a warning.

use std::os::unix::fs::PermissionsExt;

use crate::deliver_activate::{run_site, site, Site};
use crate::deliver_waldur::{expected, fake, open_grace, ACCOUNTS, OFFERING};
use crate::fakes::waldur::{FakeWaldur, FaultMix, Outcome, OIDC_TOKEN_PATH};

const CLIENT: &str = "slurm-ledger";
const SECRET: &str = "oidc-s3cret-7f2a";

/// The fake with its token endpoint on, tokens valid for `expires_in` seconds.
fn oidc_fake(expires_in: u64) -> FakeWaldur {
    let f = fake(&ACCOUNTS, FaultMix::default());
    f.enable_oidc(CLIENT, SECRET, expires_in);
    f
}

/// The sink with OIDC keys (`extra`: more `[sinks.waldur]` lines, e.g. the secret file).
fn write_cfg(site: &Site, fake: &FakeWaldur, extra: &str) {
    let text = format!(
        "[delivery]\nretry_backoff = \"1s\"\nmax_backoff = \"1s\"\n\
         [sinks.waldur]\nurl = \"{}\"\noffering_uuid = \"{OFFERING}\"\ntimeout_secs = 2\nrunning_slice = \"1s\"\n\
         grace = \"{}\"\noidc_token_url = \"{}\"\noidc_client_id = \"{CLIENT}\"\n{extra}\n\
         [sinks.waldur.components.cpu]\nunit_factor = 60\n[sinks.waldur.components.mem]\nunit_factor = 61440\n",
        fake.base_url(),
        open_grace(),
        fake.oidc_token_url()
    );
    std::fs::write(&site.cfg, text).unwrap();
}

/// Runs the binary with `env` (no Waldur token in it); neither the secret nor an access token
/// may appear in its output.
fn run(site: &Site, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    run_site(site, args, env, &[SECRET, "wrong-secret-9", "at-0000000b-"], "info")
}

fn token_requests(fake: &FakeWaldur) -> usize {
    fake.requests().iter().filter(|r| r.path == OIDC_TOKEN_PATH).count()
}

#[test]
fn with_oidc_the_totals_are_exact_and_one_token_serves_the_pass() {
    let site = site();
    let fake = oidc_fake(300);
    write_cfg(&site, &fake, "");
    let (code, out, err) = run(&site, &["deliver"], &[("SLURM_LEDGER_WALDUR_OIDC_SECRET", SECRET)]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (per, users) = expected(&site);
    assert_eq!(fake.usages(), per);
    assert_eq!(fake.user_usages(), users);
    let api = fake.requests().into_iter().filter(|r| r.path.starts_with("/api/")).collect::<Vec<_>>();
    assert!(api.len() > 10 && api.iter().all(|r| r.auth && matches!(r.outcome, Outcome::Status(200 | 201))), "{api:?}");
    assert_eq!(token_requests(&fake), 1, "one token for the whole pass");
    assert_eq!(fake.oidc_issued(), 1);
}

#[test]
fn a_token_revoked_mid_pass_is_renewed_once_and_delivery_goes_on() {
    let site = site();
    let fake = oidc_fake(300);
    fake.revoke_oidc_tokens_after(6);
    write_cfg(&site, &fake, "");
    let (code, out, err) = run(&site, &["deliver"], &[("SLURM_LEDGER_WALDUR_OIDC_SECRET", SECRET)]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (per, users) = expected(&site);
    assert_eq!(fake.usages(), per);
    assert_eq!(fake.user_usages(), users);
    let refused = fake.requests().iter().filter(|r| r.outcome == Outcome::Status(401)).count();
    // Each request in flight with the revoked token is refused once (up to 4 go at once); one
    // new token serves them all.
    assert!((1..=4).contains(&refused), "{refused} refused:\n{err}");
    assert_eq!(token_requests(&fake), 2, "one new token:\n{err}");
    // A write refused for its token was sent again, not lost or doubled.
    assert!(err.contains("fetching a new one"), "{err}");
}

#[test]
fn a_wrong_client_secret_names_the_token_url_and_sends_nothing() {
    let site = site();
    let fake = oidc_fake(300);
    write_cfg(&site, &fake, "");
    let env = [("SLURM_LEDGER_WALDUR_OIDC_SECRET", "wrong-secret-9")];
    let (_, out, err) = run(&site, &["deliver"], &env);
    assert!(out.contains("16 to retry"), "{out}\n{err}");
    let (_, status, err) = run(&site, &["status"], &env);
    let all = format!("{status}\n{err}");
    assert!(all.contains(&fake.oidc_token_url()), "the token URL is named:\n{all}");
    assert!(all.contains("invalid_client") && all.contains("SLURM_LEDGER_WALDUR_OIDC_SECRET"), "{all}");
    assert_eq!(fake.writes(), Default::default(), "nothing was sent");
    assert!(fake.requests().iter().all(|r| !r.path.starts_with("/api/")), "no Waldur request without a token");
    // One refusal per pass, not one per item (a wrong secret can lock an identity provider's client).
    assert_eq!((token_requests(&fake), fake.oidc_issued()), (1, 0));
}

#[test]
fn a_secret_file_others_can_read_is_used_with_a_warning() {
    let site = site();
    let fake = oidc_fake(300);
    let file = site.cfg.with_file_name("waldur-oidc.secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_cfg(&site, &fake, &format!("oidc_client_secret_file = \"{}\"", file.display()));
    // A token in the environment is not used next to OIDC keys, and that is said.
    let (code, out, err) = run(&site, &["deliver"], &[("SLURM_LEDGER_WALDUR_TOKEN", "tok-unused")]);
    assert_eq!(code, 0, "{out}\n{err}");
    let all = format!("{out}\n{err}");
    assert!(all.contains("mode 644") && all.contains(&format!("chmod 600 {}", file.display())), "{all}");
    assert!(all.contains("SLURM_LEDGER_WALDUR_TOKEN is set") && !all.contains("tok-unused"), "{all}");
    assert_eq!(fake.usages(), expected(&site).0);
    assert_eq!(token_requests(&fake), 1);
}
