//! Waldur Mastermind: month-to-date usage per resource, component and user — the job of
//! waldur-site-agent's `report` mode, from the ledger (no `sacct` call of its own).
//!
//! A resource of the configured offering is found by its `backend_id`, the Slurm account. Its
//! usage is a month's *total* per component, set with `set_usage` (last value wins), then each
//! user's part with `set_user_usages` (contracts.md §2.2). The planner keeps exact totals in the
//! outbox (accumulating items, TRES-seconds); the sender converts with the component's
//! `unit_factor` and rounds to the 2 decimals Waldur takes, only in the request. A total Waldur
//! already holds is not posted again; one that would lower Waldur's figure is refused with both
//! values until decreases are allowed.
//!
//! - [`config`]: `[sinks.waldur]` as written, and its validation.
//! - [`planner`]: runs → increments of totals per (month, account, component[, user]).
//! - [`amount`]: exact totals → Waldur amounts.
//! - [`sender`]: finds the resource, compares, sets.
//! - [`client`]: HTTP, pagination, and the classification of answers into outcomes.
//! - [`auth`]: the `Authorization` header: a static token, or OIDC client credentials (cached
//!   Bearer tokens, renewed once on a 401).
//! - [`site_agent`]: waldur-site-agent's YAML config → this section (`migrate waldur-site-agent`).

pub mod amount;
pub mod auth;
pub mod client;
pub mod config;
pub mod planner;
pub mod sender;
pub mod site_agent;

use std::time::Duration;

use crate::delivery::consumer::Consumer;
use crate::secret::{load_secret, Secret, SecretError, SecretSource};

use super::{BilledTres, BuildCtx, Built, SinkError, SinkKind};
use auth::{Auth, Oidc};
use client::WaldurClient;
use config::WaldurSettings;
use planner::WaldurPlanner;
use sender::WaldurSender;

/// The sink's name in the ledger.
pub const NAME: &str = "waldur";
/// The Waldur API token.
pub const ENV_TOKEN: &str = "SLURM_LEDGER_WALDUR_TOKEN";
/// The OIDC client secret (with `oidc_token_url` and `oidc_client_id`).
pub const ENV_OIDC_SECRET: &str = "SLURM_LEDGER_WALDUR_OIDC_SECRET";

/// The Waldur sink kind (see the registry in `sinks`).
pub struct Waldur;

impl SinkKind for Waldur {
    const NAME: &'static str = NAME;
    const EXAMPLE: &'static str = config::EXAMPLE;
    type Raw = config::RawWaldur;
    type Settings = WaldurSettings;

    fn billed(s: &Self::Settings) -> Vec<BilledTres> {
        let terms = planner::terms(s);
        s.components
            .iter()
            .map(|c| BilledTres {
                key: format!("sinks.{NAME}.components.{}", c.tres),
                tres: c.tres.clone(),
                basis: s.basis,
                terms: terms.clone(),
            })
            .collect()
    }

    fn validate(raw: Self::Raw, problems: &mut crate::validate::Problems) -> Self::Settings {
        config::validate(raw, problems)
    }

    fn build(s: &WaldurSettings, ctx: &BuildCtx<'_>) -> Result<Built, SinkError> {
        let mut warnings = Vec::new();
        let client = match credentials(s, ctx.env) {
            Ok((secret, warning)) if ctx.online => {
                warnings.extend(warning);
                let http = super::http::client(Duration::from_secs(s.timeout_secs), s.ca_bundle.as_deref())
                    .map_err(|message| SinkError::Setup { sink: NAME, message })?;
                let auth = match &s.oidc {
                    None => Auth::Token(secret),
                    Some(o) => {
                        if (ctx.env)(ENV_TOKEN).is_some_and(|t| !t.trim().is_empty()) {
                            warnings.push(format!(
                                "{ENV_TOKEN} is set, but [sinks.waldur] uses OIDC client credentials \
                                 (oidc_token_url): the token is not used"
                            ));
                        }
                        let oidc = Oidc::new(http.clone(), &o.token_url, &o.client_id, secret, o.scope.clone())
                            .map_err(|message| SinkError::Config { sink: NAME, message })?;
                        Auth::Oidc(Box::new(oidc))
                    }
                };
                let client = WaldurClient::new(http, &s.api_url, &s.offering_uuid, auth)
                    .map_err(|message| SinkError::Config { sink: NAME, message })?;
                Some(client)
            }
            Ok(_) => None,
            Err(e) if ctx.online => return Err(e),
            Err(_) => None,
        };
        let planner =
            WaldurPlanner::new(NAME, s.clone()).map_err(|message| SinkError::Config { sink: NAME, message })?;
        let sender = WaldurSender::new(s.clone(), client);
        Ok(Built { consumer: Consumer::new(NAME, Box::new(planner), Box::new(sender), ctx.policy), warnings })
    }
}

/// The secret the sink authenticates with: the OIDC client secret when `oidc_*` keys are set, else
/// the API token; and a warning for a secret file others can read. Without either, the error
/// names both ways.
fn credentials(
    s: &WaldurSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Secret, Option<String>), SinkError> {
    let Some(o) = &s.oidc else {
        let src = SecretSource {
            what: "Waldur API token",
            env: &[ENV_TOKEN],
            file: s.token_file.as_deref(),
            file_key: "sinks.waldur.token_file",
        };
        return load_secret(&src, env).map_err(|e| match e {
            SecretError::Missing { .. } => SinkError::Config {
                sink: NAME,
                message: format!(
                    "no Waldur credentials: set {ENV_TOKEN} or token_file (mode 0600) for an API token, or use OIDC \
                     client credentials: oidc_token_url, oidc_client_id, and the client secret in {ENV_OIDC_SECRET} \
                     or oidc_client_secret_file"
                ),
            },
            e => e.into(),
        });
    };
    let src = SecretSource {
        what: "Waldur OIDC client secret",
        env: &[ENV_OIDC_SECRET],
        file: o.secret_file.as_deref(),
        file_key: "sinks.waldur.oidc_client_secret_file",
    };
    load_secret(&src, env).map_err(SinkError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Problems;

    fn settings(extra: &str) -> WaldurSettings {
        let text = format!(
            "url = \"https://w.example.org/\"\noffering_uuid = \"d42a18b6b8ba4c2bb0591b3ff8fb181d\"\n{extra}\n[components.cpu]\n"
        );
        let mut problems = Problems::new();
        let s = config::validate(toml::from_str(&text).unwrap(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        s
    }

    #[test]
    fn without_credentials_the_error_names_both_ways() {
        let e = credentials(&settings(""), &|_| None).unwrap_err().to_string();
        for w in
            [ENV_TOKEN, "token_file", "oidc_token_url", "oidc_client_id", ENV_OIDC_SECRET, "oidc_client_secret_file"]
        {
            assert!(e.contains(w), "{w}: {e}");
        }
        let oidc = settings("oidc_token_url = \"https://kc/token\"\noidc_client_id = \"c\"");
        // With OIDC keys the token is not what is missing: the client secret is.
        let env = |n: &str| (n == ENV_TOKEN).then(|| "tok".to_string());
        let e = credentials(&oidc, &env).unwrap_err().to_string();
        assert!(e.contains(ENV_OIDC_SECRET) && e.contains("oidc_client_secret_file"), "{e}");
        let env = |n: &str| (n == ENV_OIDC_SECRET).then(|| "s3cret".to_string());
        assert_eq!(credentials(&oidc, &env).unwrap().0.expose(), "s3cret");
        assert!(credentials(&settings(""), &env).unwrap_err().to_string().contains("no Waldur credentials"));
    }
}
