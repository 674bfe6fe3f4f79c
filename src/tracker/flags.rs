//! slurm-tracker's command line, as a site's crontab runs it → [`TrackerFlags`].
//!
//! slurm-tracker is a cobra (spf13/pflag) command: `--flag value` and `--flag=value`; `--dry-run`
//! alone or as `--dry-run=<bool>`. The flags are `--org` (required), `--lookback` (minutes,
//! default 5), `--dry-run`, `--api-key` (else `PW_API_KEY`), `--api-server` (else
//! `PW_PLATFORM_HOST`), `--state-file` (default `./slurm_job_states.db`) and `--config` (default
//! `config.json`). Parsing is pure: the environment fallbacks are the caller's ([`ENV_API_KEY`],
//! [`ENV_PLATFORM_HOST`]), and relative paths stay relative (to the cron job's working directory).
//!
//! Stricter than cobra where cobra silently does the unexpected: a repeated flag, a positional
//! argument (cobra ignores them, so `--dry-run false` turned dry-run *on*), a value that is
//! itself a flag (`--org --dry-run`), and a `--lookback` with a leading zero (pflag reads `010`
//! as octal 8) are errors.
//!
//! The API key is a [`Secret`]: its `Debug` prints `***`, and no error message quotes any
//! argument's text except flag names and values known to be harmless (`--lookback`'s number,
//! a boolean literal), so a key written in the wrong place cannot leak into a log either.

use std::path::PathBuf;

/// Environment variable slurm-tracker reads when `--api-key` is absent.
pub const ENV_API_KEY: &str = "PW_API_KEY";
/// Environment variable slurm-tracker reads when `--api-server` is absent.
pub const ENV_PLATFORM_HOST: &str = "PW_PLATFORM_HOST";
/// `--lookback` when not given, in minutes.
pub const DEFAULT_LOOKBACK_MINUTES: u32 = 5;
/// `--state-file` when not given (relative to the cron job's working directory).
pub const DEFAULT_STATE_FILE: &str = "./slurm_job_states.db";
/// `--config` when not given (relative to the cron job's working directory).
pub const DEFAULT_CONFIG: &str = "config.json";

use crate::secret::Secret;

/// A slurm-tracker invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerFlags {
    /// `--org`: the ACTIVATE organization name.
    pub org: String,
    /// `--lookback`: minutes of sacct history per run.
    pub lookback_minutes: u32,
    /// `--dry-run`: the tracker logged instead of posting, **but still wrote state** (contracts §1.3 #2).
    pub dry_run: bool,
    /// `--api-key`, when on the command line (else the tracker read [`ENV_API_KEY`]).
    pub api_key: Option<Secret>,
    /// `--api-server`, when on the command line (else [`ENV_PLATFORM_HOST`], else decoded from the key).
    pub api_server: Option<String>,
    /// `--state-file`, or [`DEFAULT_STATE_FILE`].
    pub state_file: PathBuf,
    /// `--config`, or [`DEFAULT_CONFIG`].
    pub config: PathBuf,
}

/// Why a slurm-tracker command line cannot be imported. Never contains an argument's value
/// except a harmless one (a number, a boolean literal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagsError {
    #[error("unknown slurm-tracker flag(s): {}; slurm-tracker knows --org, --lookback, --dry-run, --api-key, --api-server, --state-file, --config: fix or remove them", .0.join(", "))]
    Unknown(Vec<String>),
    #[error("{flag} needs a value; write {flag}=VALUE or {flag} VALUE")]
    MissingValue { flag: String },
    #[error("{flag} is followed by another flag instead of its value (slurm-tracker would have taken that flag as the value); give {flag} a value")]
    ValueIsFlag { flag: String },
    #[error("{flag} has an empty value; give it one or remove the flag")]
    EmptyValue { flag: String },
    #[error("{flag} is given more than once (slurm-tracker used the last one); keep one")]
    Repeated { flag: String },
    #[error("--lookback {value:?} is not a whole number of minutes; write e.g. --lookback=5")]
    BadLookback { value: String },
    #[error("--lookback {value:?} has a leading zero, which slurm-tracker read as octal; write the number of minutes it meant in decimal")]
    OctalLookback { value: String },
    #[error("--dry-run={value:?} is not a boolean; write --dry-run, --dry-run=true or --dry-run=false")]
    BadBool { value: String },
    #[error(
        "argument {position} is not a flag; slurm-tracker ignored such arguments, so `--dry-run {literal}` meant dry-run ON: write --dry-run={literal} or drop it"
    )]
    BoolAfterDryRun { position: usize, literal: String },
    #[error(
        "argument {position} is not a flag (its text is not shown: it may be a credential); slurm-tracker ignored it: remove it or put `--flag=` before it"
    )]
    Positional { position: usize },
    #[error("--org is required (slurm-tracker refused to run without it); add --org=ORGANIZATION")]
    MissingOrg,
}

/// Parses slurm-tracker's arguments (without the program name).
pub fn parse_flags<I, S>(args: I) -> Result<TrackerFlags, FlagsError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut org = None;
    let mut lookback = None;
    let mut dry_run = None;
    let mut api_key = None;
    let mut api_server = None;
    let mut state_file = None;
    let mut config = None;
    let mut unknown = Vec::new();
    // The first positional argument; reported after unknown flags, which usually explain it.
    let mut positional = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let position = i + 1;
        i += 1;
        if arg == "--" {
            // Everything after `--` is positional.
            if i < args.len() {
                positional.get_or_insert(FlagsError::Positional { position: i + 1 });
            }
            break;
        }
        let Some(body) = arg.strip_prefix("--") else {
            if arg.starts_with('-') && arg.len() > 1 {
                // pflag shorthand; slurm-tracker defines none. Name only `-x`, never what follows.
                unknown.push(arg.chars().take(2).collect());
                continue;
            }
            let prev_is_bare_dry_run = position >= 2 && args[position - 2] == "--dry-run";
            positional.get_or_insert(if prev_is_bare_dry_run && parse_go_bool(arg).is_some() {
                FlagsError::BoolAfterDryRun { position, literal: arg.clone() }
            } else {
                FlagsError::Positional { position }
            });
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        let flag = format!("--{name}");
        if name == "dry-run" {
            let value = match inline {
                None => true,
                Some(v) => parse_go_bool(&v).ok_or(FlagsError::BadBool { value: v })?,
            };
            set_once(&mut dry_run, value, &flag)?;
            continue;
        }
        let slot: &mut Option<String> = match name {
            "org" => &mut org,
            "lookback" => &mut lookback,
            "api-key" => &mut api_key,
            "api-server" => &mut api_server,
            "state-file" => &mut state_file,
            "config" => &mut config,
            _ => {
                unknown.push(flag);
                continue;
            }
        };
        let value = match inline {
            Some(v) => v,
            None => {
                let Some(next) = args.get(i) else { return Err(FlagsError::MissingValue { flag }) };
                if next.starts_with("--") {
                    return Err(FlagsError::ValueIsFlag { flag });
                }
                i += 1;
                next.clone()
            }
        };
        if value.is_empty() {
            return Err(FlagsError::EmptyValue { flag });
        }
        set_once(slot, value, &flag)?;
    }
    if !unknown.is_empty() {
        return Err(FlagsError::Unknown(unknown));
    }
    if let Some(e) = positional {
        return Err(e);
    }
    let lookback_minutes = match lookback {
        None => DEFAULT_LOOKBACK_MINUTES,
        Some(v) => parse_lookback(&v)?,
    };
    Ok(TrackerFlags {
        org: org.ok_or(FlagsError::MissingOrg)?,
        lookback_minutes,
        dry_run: dry_run.unwrap_or(false),
        api_key: api_key.map(|k| Secret::new(&k)),
        api_server,
        state_file: PathBuf::from(state_file.unwrap_or_else(|| DEFAULT_STATE_FILE.into())),
        config: PathBuf::from(config.unwrap_or_else(|| DEFAULT_CONFIG.into())),
    })
}

fn set_once<T>(slot: &mut Option<T>, value: T, flag: &str) -> Result<(), FlagsError> {
    if slot.is_some() {
        return Err(FlagsError::Repeated { flag: flag.into() });
    }
    *slot = Some(value);
    Ok(())
}

/// Go's `strconv.ParseBool`, which pflag uses.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn parse_lookback(v: &str) -> Result<u32, FlagsError> {
    if !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FlagsError::BadLookback { value: v.into() });
    }
    if v.len() > 1 && v.starts_with('0') {
        return Err(FlagsError::OctalLookback { value: v.into() });
    }
    v.parse().map_err(|_| FlagsError::BadLookback { value: v.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "pwt_c2VjcmV0LmV4YW1wbGUuY29t.TOPSECRET";

    fn parse(line: &str) -> Result<TrackerFlags, FlagsError> {
        parse_flags(line.split_whitespace())
    }

    #[test]
    fn defaults() {
        let f = parse("--org acme").unwrap();
        assert_eq!(
            f,
            TrackerFlags {
                org: "acme".into(),
                lookback_minutes: 5,
                dry_run: false,
                api_key: None,
                api_server: None,
                state_file: "./slurm_job_states.db".into(),
                config: "config.json".into(),
            }
        );
    }

    #[test]
    fn a_crontab_line_with_both_value_styles() {
        let line = format!("--org=acme --lookback 15 --dry-run --api-key {KEY} --api-server=https://cloud.parallel.works --state-file /var/lib/t/s.db --config=/etc/t/config.json");
        let f = parse(&line).unwrap();
        assert_eq!(f.org, "acme");
        assert_eq!(f.lookback_minutes, 15);
        assert!(f.dry_run);
        assert_eq!(f.api_key.as_ref().map(Secret::expose), Some(KEY));
        assert_eq!(f.api_server.as_deref(), Some("https://cloud.parallel.works"));
        assert_eq!(f.state_file, PathBuf::from("/var/lib/t/s.db"));
        assert_eq!(f.config, PathBuf::from("/etc/t/config.json"));
        // `=` inside a value stays in the value (pflag splits at the first one).
        assert_eq!(parse("--org=a=b").unwrap().org, "a=b");
    }

    #[test]
    fn the_key_never_shows_in_debug_or_errors() {
        let f = parse(&format!("--org acme --api-key={KEY}")).unwrap();
        let debug = format!("{f:?}");
        assert!(!debug.contains("TOPSECRET") && debug.contains("api_key: Some(***)"), "{debug}");
        for line in [
            format!("--org acme --api-key={KEY} --api-key={KEY}"),
            format!("--org acme --apikey {KEY}"),
            format!("--org acme --apikey={KEY}"),
            format!("--org acme -k{KEY}"),
            format!("--org acme {KEY}"),
            format!("--org acme -- {KEY}"),
            format!("--api-key {KEY}"),
        ] {
            let e = parse(&line).unwrap_err();
            for text in [e.to_string(), format!("{e:?}")] {
                assert!(!text.contains("TOPSECRET") && !text.contains("pwt_"), "{line}: {text}");
            }
        }
    }

    #[test]
    fn dry_run_forms() {
        assert!(parse("--org a --dry-run=true").unwrap().dry_run);
        assert!(parse("--org a --dry-run=1").unwrap().dry_run);
        assert!(!parse("--org a --dry-run=False").unwrap().dry_run);
        assert_eq!(parse("--org a --dry-run=no").unwrap_err(), FlagsError::BadBool { value: "no".into() });
        let e = parse("--org a --dry-run false").unwrap_err();
        assert_eq!(e, FlagsError::BoolAfterDryRun { position: 4, literal: "false".into() });
        assert!(e.to_string().contains("write --dry-run=false"), "{e}");
    }

    #[test]
    fn unknown_flags_are_all_named_without_values() {
        let e = parse("--org a --verbose --lookbak=5 -v --help").unwrap_err();
        assert_eq!(e, FlagsError::Unknown(vec!["--verbose".into(), "--lookbak".into(), "-v".into(), "--help".into()]));
        assert!(e.to_string().starts_with("unknown slurm-tracker flag(s): --verbose, --lookbak, -v, --help;"), "{e}");
        // A misspelt flag's value is positional to us; the flag is the error that explains it.
        assert_eq!(
            parse(&format!("--org a --apikey {KEY}")).unwrap_err(),
            FlagsError::Unknown(vec!["--apikey".into()])
        );
    }

    #[test]
    fn mistakes_cobra_would_have_swallowed() {
        assert_eq!(parse("--lookback 5").unwrap_err(), FlagsError::MissingOrg);
        assert_eq!(parse("--org").unwrap_err(), FlagsError::MissingValue { flag: "--org".into() });
        assert_eq!(parse("--org --dry-run").unwrap_err(), FlagsError::ValueIsFlag { flag: "--org".into() });
        assert_eq!(parse("--org=").unwrap_err(), FlagsError::EmptyValue { flag: "--org".into() });
        assert_eq!(parse("--org a --org b").unwrap_err(), FlagsError::Repeated { flag: "--org".into() });
        assert_eq!(
            parse("--org a --dry-run --dry-run").unwrap_err(),
            FlagsError::Repeated { flag: "--dry-run".into() }
        );
        assert_eq!(parse("--org a extra").unwrap_err(), FlagsError::Positional { position: 3 });
        assert_eq!(parse("--org a --").unwrap().org, "a");
    }

    #[test]
    fn lookback_values() {
        assert_eq!(parse("--org a --lookback=0").unwrap().lookback_minutes, 0);
        assert_eq!(parse("--org a --lookback 1440").unwrap().lookback_minutes, 1440);
        assert_eq!(parse("--org a --lookback=-5").unwrap_err(), FlagsError::BadLookback { value: "-5".into() });
        assert_eq!(parse("--org a --lookback 5m").unwrap_err(), FlagsError::BadLookback { value: "5m".into() });
        assert_eq!(
            parse("--org a --lookback 99999999999").unwrap_err(),
            FlagsError::BadLookback { value: "99999999999".into() }
        );
        assert_eq!(parse("--org a --lookback 010").unwrap_err(), FlagsError::OctalLookback { value: "010".into() });
    }
}
