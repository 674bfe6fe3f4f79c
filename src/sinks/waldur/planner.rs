//! The Waldur planner: each run's new billable seconds, cut at month boundaries in the sink's
//! zone ([`Counting`]), become increments of accumulating items: one total per (month, Slurm
//! account, component) and one per (month, account, component, Slurm user). The engine adds them
//! to the stored totals, and a total that changed is due to be set again. Pure.
//!
//! An item's route pins what it totals: account, month (`YYYY-MM`), TRES and, for a user's total,
//! the Slurm user; the sender finds the Waldur resource by the account (its `backend_id`) and
//! maps the user when it sends.

use crate::delivery::consumer::{Decision, Planner, RenderError};
use crate::delivery::totals::{Count, Counting};
use crate::ledger::{Delivery, NewItem, RunMark};
use crate::meter::billed_count;
use crate::meter::period::{Calendar, PeriodKind};
use crate::model::{JobRun, UnixTime};

use super::amount::unit_count;
use super::config::WaldurSettings;

/// What an item totals, as its route holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub account: &'a str,
    /// `YYYY-MM` in the sink's zone.
    pub month: &'a str,
    pub tres: &'a str,
    /// `Some`: this Slurm user's part of the total.
    pub user: Option<&'a str>,
}

impl<'a> Route<'a> {
    /// `account␟month␟tres[␟user]` (built by hand: a day's planning makes millions).
    fn encode(&self) -> String {
        let user = self.user.map_or(0, |u| u.len() + 1);
        let mut r = String::with_capacity(self.account.len() + self.month.len() + self.tres.len() + 2 + user);
        for (i, part) in [self.account, self.month, self.tres].into_iter().chain(self.user).enumerate() {
            if i > 0 {
                r.push('\u{1f}');
            }
            r.push_str(part);
        }
        r
    }

    /// The route an item was planned with.
    pub fn decode(d: &'a Delivery) -> Result<Self, RenderError> {
        let bad = || RenderError::BadRoute { id: d.id.clone(), route: d.route.clone() };
        let mut parts = d.route.as_deref().ok_or_else(bad)?.split('\u{1f}');
        let (Some(account), Some(month), Some(tres)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let user = parts.next();
        if parts.next().is_some() || month.len() != 7 {
            return Err(bad());
        }
        Ok(Self { account, month, tres, user })
    }

    /// The item's id: `wd:{sink}:{month}:{account}|{tres}` (`|{user}` for a user's part).
    fn id(&self, sink: &str) -> String {
        let user = self.user.map_or(0, |u| u.len() + 1);
        let mut id =
            String::with_capacity(6 + sink.len() + self.month.len() + self.account.len() + self.tres.len() + user);
        for part in ["wd:", sink, ":", self.month, ":", self.account, "|", self.tres] {
            id.push_str(part);
        }
        if let Some(u) = self.user {
            id.push('|');
            id.push_str(u);
        }
        id
    }
}

/// Waldur's [`Planner`].
pub struct WaldurPlanner {
    sink: String,
    cfg: WaldurSettings,
    counting: Counting,
    /// The last month labelled: (its first second, its label); nearly every run of a pass is
    /// in the same month, and labelling is a time-zone conversion and a format.
    last_month: std::sync::Mutex<Option<(i64, String)>>,
}

impl WaldurPlanner {
    pub fn new(sink: &str, cfg: WaldurSettings) -> Result<Self, String> {
        let tz = jiff::tz::TimeZone::get(&cfg.timezone)
            .map_err(|e| format!("time zone {:?} is not in this machine's zone database ({e})", cfg.timezone))?;
        let counting = Counting {
            calendar: Calendar { kind: PeriodKind::Month, tz },
            min_running_secs: cfg.running_slice_secs,
            allow_decrease: cfg.allow_decrease,
        };
        Ok(Self { sink: sink.to_string(), cfg, counting, last_month: std::sync::Mutex::new(None) })
    }

    /// The month label (`YYYY-MM`) of an instant, in the sink's zone.
    pub fn month(&self, t: UnixTime) -> String {
        self.counting.calendar.label(t)
    }

    /// [`WaldurPlanner::month`] of a piece's first second (a month's start), remembered.
    fn month_of_piece(&self, start: UnixTime) -> String {
        let mut last = self.last_month.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some((at, label)) if *at == start.0 => label.clone(),
            _ => {
                let label = self.month(start);
                *last = Some((start.0, label.clone()));
                label
            }
        }
    }
}

impl Planner for WaldurPlanner {
    fn plan(&self, job: &JobRun, mark: &RunMark, _now: UnixTime) -> Decision {
        if mark.done {
            return Decision::Nothing;
        }
        let (pieces, next) = match self.counting.count(job, mark) {
            Count::Hold(reason) => return Decision::Hold(reason),
            Count::Pieces { pieces, next } => (pieces, next),
        };
        let counts: Vec<(&str, i64)> = self
            .cfg
            .components
            .iter()
            .map(|c| (c.tres.as_str(), unit_count(&c.tres, billed_count(job, self.cfg.basis, &c.tres)) as i64))
            .filter(|(_, n)| *n > 0)
            .collect();
        if pieces.is_empty() || counts.is_empty() {
            return Decision::Plan { items: vec![], next };
        }
        if job.account.is_empty() {
            return Decision::Hold(
                "the run has no Slurm account, and Waldur resources are found by account (backend_id)".into(),
            );
        }
        let mut items = Vec::with_capacity(pieces.len() * counts.len() * 2);
        for p in &pieces {
            let month = self.month_of_piece(p.period.0);
            for (tres, n) in &counts {
                for user in [None, Some(job.user.as_str())] {
                    let route = Route { account: &job.account, month: &month, tres, user };
                    items.push(NewItem {
                        id: route.id(&self.sink),
                        span: Some(p.period),
                        amount: None,
                        route: Some(route.encode()),
                        increment: Some(n.saturating_mul(p.secs)),
                    });
                }
            }
        }
        Decision::Plan { items, next }
    }

    /// A total goes where its route says; nothing to re-route.
    fn reroute(&self, _job: &JobRun, item: &Delivery) -> Result<Option<String>, String> {
        Ok(item.route.clone())
    }

    fn terms(&self) -> Option<String> {
        Some(terms(&self.cfg))
    }
}

/// What the sink bills on: the components counted, the basis and the zone months are cut in. A
/// unit_factor is not a term: totals are kept in TRES-seconds and converted when they are sent.
pub fn terms(cfg: &WaldurSettings) -> String {
    let tres: Vec<&str> = cfg.components.iter().map(|c| c.tres.as_str()).collect();
    let basis = match cfg.basis {
        crate::meter::Basis::Allocated => "allocated",
        crate::meter::Basis::Requested => "requested",
    };
    format!("components={} basis={basis} period=month zone={}", tres.join(","), cfg.timezone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClusterName, JobKey, JobState, Tres};
    use crate::validate::Problems;

    fn settings() -> WaldurSettings {
        let raw: super::super::config::RawWaldur = toml::from_str(
            "url = \"https://w.example.org\"\noffering_uuid = \"d42a18b6b8ba4c2bb0591b3ff8fb181d\"\n\
             timezone = \"Europe/Berlin\"\nrunning_slice = \"1s\"\n\
             [components.cpu]\nunit_factor = 60000\n[components.mem]\nunit_factor = 61440\n\
             [components.\"gres/gpu\"]\naccounting_type = \"limit\"\n",
        )
        .unwrap();
        let mut problems = Problems::new();
        let s = super::super::config::validate(raw, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        s
    }

    fn job(account: &str) -> JobRun {
        let mut j = JobRun::new(
            JobKey { cluster: ClusterName::new("c").unwrap(), job_id_raw: 42, submit: UnixTime(1_798_750_000) },
            "42".into(),
        );
        j.account = account.into();
        j.user = "alice".into();
        // 2026-12-31T22:30Z = 23:30 in Berlin: 30 min in December, 60 in January.
        j.start = Some(UnixTime(1_798_756_200));
        j.elapsed_secs = 5400;
        j.state = JobState::Completed;
        j.alloc_tres =
            Tres::from_pairs([("cpu".to_string(), 4), ("mem".to_string(), 2 << 30), ("gres/gpu".to_string(), 1)]);
        j
    }

    #[test]
    fn a_run_becomes_month_totals_per_component_and_user() {
        let p = WaldurPlanner::new("waldur", settings()).unwrap();
        let Decision::Plan { items, next } = p.plan(&job("proj1"), &RunMark::default(), UnixTime(0)) else { panic!() };
        assert!(next.done);
        let got: Vec<(String, Option<i64>)> = items.iter().map(|i| (i.id.clone(), i.increment)).collect();
        assert_eq!(
            got,
            [
                ("wd:waldur:2026-12:proj1|cpu".to_string(), Some(4 * 1800)),
                ("wd:waldur:2026-12:proj1|cpu|alice".to_string(), Some(4 * 1800)),
                ("wd:waldur:2026-12:proj1|mem".to_string(), Some(2048 * 1800)),
                ("wd:waldur:2026-12:proj1|mem|alice".to_string(), Some(2048 * 1800)),
                ("wd:waldur:2027-01:proj1|cpu".to_string(), Some(4 * 3600)),
                ("wd:waldur:2027-01:proj1|cpu|alice".to_string(), Some(4 * 3600)),
                ("wd:waldur:2027-01:proj1|mem".to_string(), Some(2048 * 3600)),
                ("wd:waldur:2027-01:proj1|mem|alice".to_string(), Some(2048 * 3600)),
            ],
            "gres/gpu is a limit component: not reported"
        );
        let d = Delivery {
            id: items[1].id.clone(),
            seq: 0,
            sink: "waldur".into(),
            key: None,
            span: items[1].span,
            amount: None,
            route: items[1].route.clone(),
            total: items[1].increment,
            state: crate::ledger::DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: UnixTime(0),
            last_error: None,
            remote_id: None,
        };
        let r = Route::decode(&d).unwrap();
        assert_eq!((r.account, r.month, r.tres, r.user), ("proj1", "2026-12", "cpu", Some("alice")));
    }

    #[test]
    fn a_run_without_an_account_is_held_and_terms_name_what_is_billed() {
        let p = WaldurPlanner::new("waldur", settings()).unwrap();
        assert!(
            matches!(p.plan(&job(""), &RunMark::default(), UnixTime(0)), Decision::Hold(r) if r.contains("no Slurm account"))
        );
        assert_eq!(p.terms().unwrap(), "components=cpu,mem basis=allocated period=month zone=Europe/Berlin");
    }
}
