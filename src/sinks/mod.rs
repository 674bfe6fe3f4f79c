//! Sinks: one folder per platform, each owning its `[sinks.NAME]` config section (raw keys,
//! validation), its planner (or its pricing for the shared slice planner), its sender and its
//! tests, registered in the one list at the bottom of this file ([`registry!`]). Adding a sink
//! touches its folder and that list.
//!
//! A sink is built at the edge into a [`Consumer`] of the delivery engine; keys are read here from
//! the environment or files (never from the config or the command line) and never printed. No
//! sink imports another; the ledger stores a sink's name and items and knows no sink.

pub mod activate;
pub mod cc_backend;
pub mod cc_job;
pub mod http;
pub mod jsonl;
pub mod nats;
pub mod waldur;

use crate::delivery::consumer::{Consumer, EnginePolicy};
use crate::delivery::slices::Metering;
use crate::secret::SecretError;
use crate::validate::Problems;

/// One kind of sink: its config section and how it becomes a consumer.
pub trait SinkKind {
    /// The sink's name: its config table (`[sinks.NAME]`) and its name in the ledger. Stable:
    /// renaming loses the sink's state.
    const NAME: &'static str;
    /// The config section as written (serde, `deny_unknown_fields`).
    type Raw: serde::de::DeserializeOwned + Default;
    /// The section as `config example` shows it: every key commented out (`# key = value  # what`),
    /// each line ending in a newline; uncommented, it must validate (a test checks it).
    const EXAMPLE: &'static str;
    /// The section validated.
    type Settings: Clone + std::fmt::Debug + PartialEq + Eq + serde::Serialize;
    /// Pure validation: every problem, each naming its key (`sinks.NAME.key`) and the fix.
    fn validate(raw: Self::Raw, problems: &mut Problems) -> Self::Settings;
    /// The TRES the sink bills, if it bills usage (each is checked against the ledger and Slurm
    /// before anything is planned).
    fn billed(_settings: &Self::Settings) -> Vec<BilledTres> {
        Vec::new()
    }
    /// The consumer. `ctx.online`: load keys so it can send; otherwise it can plan and describe.
    fn build(settings: &Self::Settings, ctx: &BuildCtx<'_>) -> Result<Built, SinkError>;
}

/// A TRES a sink bills, as the preflight checks it: the config key that names it, the TRES,
/// its basis, and the sink's terms (a sink that planned on these very terms was checked then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BilledTres {
    pub key: String,
    pub tres: String,
    pub basis: crate::meter::Basis,
    pub terms: String,
}

impl BilledTres {
    /// The one TRES of a slice sink's metering (`sinks.NAME.tres`).
    pub fn of_metering(sink: &str, m: &Metering) -> Vec<BilledTres> {
        vec![BilledTres { key: format!("sinks.{sink}.tres"), tres: m.tres.clone(), basis: m.basis, terms: m.terms() }]
    }
}

/// What building a sink needs from the edge.
pub struct BuildCtx<'a> {
    /// Load secrets and clients so the sinks can send (`false`: `--dry-run`, `status`).
    pub online: bool,
    /// The environment, looked up through this (tests need no globals).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Retry timing (`[delivery]`).
    pub policy: EnginePolicy,
}

/// A built sink, and what the operator must be told (a key file others can read).
pub struct Built {
    pub consumer: Consumer,
    pub warnings: Vec<String>,
}

/// Why sinks cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("--sink {name}: no [sinks.{name}] table in the config ({have}); see `slurm-ledger config example`")]
    NotConfigured { name: String, have: String },
    #[error("no sink is configured: add a [sinks.activate], [sinks.jsonl], [sinks.waldur], [sinks.cc_backend] or [sinks.nats] table to the config (see `slurm-ledger config example`)")]
    NoneConfigured,
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A setting that only shows as wrong once used (a host that cannot be resolved, a zone).
    #[error("[sinks.{sink}]: {message}")]
    Config { sink: &'static str, message: String },
    /// The sink cannot start (an HTTP client that cannot be built).
    #[error("setting up the {sink} sink: {message}")]
    Setup { sink: &'static str, message: String },
}

impl SinkError {
    /// The operator's input is wrong (exit status 2), not the machine.
    pub fn is_usage(&self) -> bool {
        !matches!(self, Self::Setup { .. })
    }
}

/// The configured sinks, all of them, or those named in `only`, in registry order.
pub fn build(settings: &SinkSettings, only: &[String], ctx: &BuildCtx<'_>) -> Result<Vec<Built>, SinkError> {
    let configured = settings.names();
    for name in only {
        if !configured.contains(&name.as_str()) {
            let have = if configured.is_empty() {
                "none is configured".to_string()
            } else {
                format!("configured: {}", configured.join(", "))
            };
            return Err(SinkError::NotConfigured { name: name.clone(), have });
        }
    }
    let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    let built = settings.build_each(&wanted, ctx)?;
    if built.is_empty() {
        return Err(SinkError::NoneConfigured);
    }
    Ok(built)
}

/// The one list of sinks: `name => kind`. Generates `RawSinks` (the `[sinks]` table as written),
/// `SinkSettings` (validated), [`validate`] and the build dispatch.
macro_rules! registry {
    ($($name:ident => $kind:ty),* $(,)?) => {
        /// `[sinks.*]` as written: one table per platform; a sink is on when its table is present.
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawSinks {
            $(pub $name: Option<<$kind as SinkKind>::Raw>,)*
        }

        /// Every configured sink, validated.
        #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
        pub struct SinkSettings {
            $(pub $name: Option<<$kind as SinkKind>::Settings>,)*
        }

        /// The names of every sink slurm-ledger has, in delivery order.
        pub const KNOWN: &[&str] = &[$(<$kind as SinkKind>::NAME),*];

        impl SinkSettings {
            /// Names of the configured sinks, in delivery order.
            pub fn names(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $(if self.$name.is_some() { v.push(<$kind as SinkKind>::NAME); })*
                v
            }

            /// The TRES each configured sink bills, by sink name.
            pub fn billed(&self) -> Vec<(&'static str, BilledTres)> {
                let mut v = Vec::new();
                $(if let Some(s) = self.$name.as_ref() {
                    v.extend(<$kind as SinkKind>::billed(s).into_iter().map(|b| (<$kind as SinkKind>::NAME, b)));
                })*
                v
            }

            fn build_each(&self, wanted: &dyn Fn(&str) -> bool, ctx: &BuildCtx<'_>) -> Result<Vec<Built>, SinkError> {
                let mut out = Vec::new();
                $(if let Some(s) = self.$name.as_ref().filter(|_| wanted(<$kind as SinkKind>::NAME)) {
                    out.push(<$kind as SinkKind>::build(s, ctx)?);
                })*
                Ok(out)
            }
        }

        /// Every sink's commented example table, in registry order (see [`SinkKind::EXAMPLE`]).
        pub fn examples() -> String {
            [$(<$kind as SinkKind>::EXAMPLE),*].join("#\n")
        }

        /// Validates every `[sinks.*]` table.
        pub fn validate(raw: RawSinks, problems: &mut Problems) -> SinkSettings {
            SinkSettings { $($name: raw.$name.map(|r| <$kind as SinkKind>::validate(r, problems)),)* }
        }
    };
}

registry! {
    activate => activate::Activate,
    jsonl => jsonl::Jsonl,
    nats => nats::Nats,
    waldur => waldur::Waldur,
    cc_backend => cc_backend::CcBackend,
}
