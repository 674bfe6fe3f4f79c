//! Sends a Waldur total: finds the resource whose `backend_id` is the item's account, reads what
//! Waldur holds, and sets the total unless Waldur already has it. A total lower than Waldur's is
//! not posted unless decreases are allowed: it is refused with both values (shown by `status`),
//! and `retry` after `allow_decrease = true` posts it. A user's part needs the resource's
//! component usage for the month, which the total creates; until then it waits (retry).
//! Without a client (dry run, no token) it can only describe.
//!
//! The engine sends a batch's totals first, then its users' parts ([`Sender::phase`]), each up to
//! `concurrency` requests at once: Waldur is usually far away (tens of ms a round trip), and a
//! busy month has thousands of totals to set one request each. What a pass caches is behind
//! locks, shared by those requests.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::delivery::consumer::{Lookup, Outcome, RenderError, ReopenError, Sender};
use crate::ledger::Delivery;
use crate::meter::period::PeriodKind;
use crate::model::{JobRun, UnixTime};

use super::amount::{cents_text, parse_cents};
use super::client::{Resource, Stored, WaldurClient};
use super::config::WaldurSettings;
use super::planner::Route;

/// Waldur's [`Sender`].
pub struct WaldurSender {
    cfg: WaldurSettings,
    client: Option<WaldurClient>,
    /// The offering's resources by backend_id, read once per pass.
    resources: Mutex<Option<HashMap<String, Resource>>>,
    /// What Waldur held at its first read this pass, per (resource, period): the components'
    /// totals, and the users' parts. An item is sent at most once a pass, so its own entry is
    /// never read after its send; a user's part that needs the total's uuid reads again when
    /// the total was set this pass.
    totals: Mutex<HashMap<ResourceMonth, HashMap<String, Stored>>>,
    parts: Mutex<HashMap<ResourceMonth, UserParts>>,
    /// The offering's users (username → URL), read once per pass: a user's part links to its
    /// offering user when Waldur has one (`None` inside: the list could not be read).
    offering_users: Mutex<Option<Option<HashMap<String, String>>>>,
    /// When this pass started sending (the grace of a month is judged against it).
    now: Mutex<Option<UnixTime>>,
    /// The months (`YYYY-MM`, first and last) a backfill reports whatever their age.
    reopened: Mutex<Option<(String, String)>>,
}

/// (resource uuid, billing period `YYYY-MM-01`).
type ResourceMonth = (String, String);

/// Users' parts of a resource's month, by (component type, Waldur username).
type UserParts = HashMap<(String, String), Stored>;

/// One item, ready to send: where, what, and the amount.
struct Request<'d> {
    route: Route<'d>,
    /// `YYYY-MM-01`, the billing period.
    period: String,
    /// The first instant of the month in the sink's zone, ISO-8601 with its offset.
    date: String,
    /// Hundredths of the component's Waldur unit.
    cents: i128,
}

impl WaldurSender {
    pub fn new(cfg: WaldurSettings, client: Option<WaldurClient>) -> Self {
        Self {
            cfg,
            client,
            resources: Mutex::new(None),
            totals: Mutex::default(),
            parts: Mutex::default(),
            offering_users: Mutex::new(None),
            now: Mutex::new(None),
            reopened: Mutex::new(None),
        }
    }

    fn request<'d>(&self, d: &'d Delivery) -> Result<Request<'d>, RenderError> {
        let route = Route::decode(d)?;
        let bad = || RenderError::BadRoute { id: d.id.clone(), route: d.route.clone() };
        let component = self.cfg.components.iter().find(|c| c.tres == route.tres).ok_or_else(bad)?;
        let ((start, _), total) = d.span.zip(d.total).ok_or_else(bad)?;
        let tz = jiff::tz::TimeZone::get(&self.cfg.timezone).map_err(|_| bad())?;
        let zoned = jiff::Timestamp::from_second(start.0).map_err(|_| bad())?.to_zoned(tz);
        Ok(Request {
            period: format!("{}-01", route.month),
            date: zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            cents: component.unit_factor.cents(total),
            route,
        })
    }

    /// Why the item's month is no longer reported (its grace ran out), if it is not. Such a total
    /// is kept exact in the ledger; a staff token reports it (Waldur refuses past months from
    /// others).
    fn closed(&self, d: &Delivery, r: &Request<'_>) -> Option<String> {
        let now = (*self.now.lock().unwrap_or_else(|p| p.into_inner()))?;
        let (_, end) = d.span?;
        let reopened = self.reopened.lock().unwrap_or_else(|p| p.into_inner());
        if reopened.as_ref().is_some_and(|(first, last)| (first.as_str()..=last.as_str()).contains(&r.route.month)) {
            return None;
        }
        if end.0.saturating_add(self.cfg.grace_secs) > now.0 {
            return None;
        }
        // A backfill's neighbouring month holds only what its windows touched: not whole.
        if let Some((first, last)) = reopened.as_ref() {
            return Some(format!(
                "{} is outside this backfill's months ({first} to {last}) and past its grace: the ledger holds only the \
                 runs the backfill's windows touched, so its total is not whole. To report it: \
                 `slurm-ledger backfill --from {m} --to {m}`",
                r.route.month,
                m = r.route.month
            ));
        }
        Some(format!(
            "{} ended more than grace = {} s ago: its totals are no longer reported (Waldur takes past months from a \
             staff token only); the ledger keeps them exact. To report them: `slurm-ledger backfill --from {m} --to {m}` \
             with a staff token",
            r.route.month,
            self.cfg.grace_secs,
            m = r.route.month
        ))
    }

    fn client(&self) -> Result<&WaldurClient, String> {
        self.client.as_ref().ok_or_else(|| "the Waldur sink has no credentials loaded (dry run)".to_string())
    }

    /// The resource of an account, from one listing of the offering per pass.
    fn resource(&self, client: &WaldurClient, account: &str) -> Result<Option<Resource>, String> {
        let mut cache = self.resources.lock().unwrap_or_else(|p| p.into_inner());
        if cache.is_none() {
            let list = client.resources()?;
            *cache = Some(list.into_iter().map(|r| (r.backend_id.clone(), r)).collect());
        }
        Ok(cache.as_ref().and_then(|c| c.get(account)).cloned())
    }

    /// What Waldur holds for the item now (`None`: nothing set), with the resource.
    fn stored(&self, client: &WaldurClient, r: &Request<'_>) -> Result<(Resource, Option<Stored>), Outcome> {
        let retry = |reason: String| Outcome::Retry { reason, after_secs: None };
        let resource = match self.resource(client, r.route.account) {
            Ok(Some(res)) => res,
            Ok(None) => {
                return Err(retry(format!(
                    "no resource of Waldur offering {} has backend_id {:?} (the Slurm account); its usage waits here until one does",
                    self.cfg.offering_uuid, r.route.account
                )))
            }
            Err(e) => return Err(retry(e)),
        };
        if resource.is_creating() {
            return Err(retry(format!("Waldur resource {} ({}) is still being created", resource.name, resource.uuid)));
        }
        if resource.is_terminal() {
            return Err(Outcome::Rejected {
                reason: format!(
                    "Waldur resource {} ({}) is {}: it gets no usage",
                    resource.name, resource.uuid, resource.state
                ),
            });
        }
        let found = match r.route.user {
            None => self.total(client, &resource.uuid, &r.period, r.route.tres, false),
            Some(user) => self.part(client, &resource.uuid, &r.period, r.route.tres, self.cfg.username(user)),
        };
        found.map(|s| (resource, s)).map_err(retry)
    }

    /// Waldur's total of a component for a resource and period, from this pass's read of the
    /// resource's totals (`again`: read them again if that read did not have it; it may have
    /// been set since).
    fn total(
        &self,
        client: &WaldurClient,
        resource: &str,
        period: &str,
        tres: &str,
        again: bool,
    ) -> Result<Option<Stored>, String> {
        let mut cache = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let key = (resource.to_string(), period.to_string());
        let missing = cache.get(&key).map(|m| !m.contains_key(tres));
        if missing.is_none() || (again && missing == Some(true)) {
            cache.insert(key.clone(), client.component_usages(resource, period)?);
        }
        Ok(cache.get(&key).and_then(|m| m.get(tres)).cloned())
    }

    /// Waldur's record of a user's part, from this pass's read of the resource's parts.
    fn part(
        &self,
        client: &WaldurClient,
        resource: &str,
        period: &str,
        tres: &str,
        username: &str,
    ) -> Result<Option<Stored>, String> {
        let mut cache = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        let key = (resource.to_string(), period.to_string());
        if !cache.contains_key(&key) {
            cache.insert(key.clone(), client.user_usages(resource, period)?);
        }
        Ok(cache.get(&key).and_then(|m| m.get(&(tres.to_string(), username.to_string()))).cloned())
    }

    /// The URL of the offering user with this username, if Waldur lists one. The list is read
    /// once per pass; when it cannot be read the part goes without the link (the site agent's
    /// "if known"), and the failure is logged once.
    fn offering_user(&self, client: &WaldurClient, username: &str) -> Option<String> {
        let mut cache = self.offering_users.lock().unwrap_or_else(|p| p.into_inner());
        let users = cache.get_or_insert_with(|| match client.offering_users() {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the Waldur offering's users: users' parts go without the link to them");
                None
            }
        });
        users.as_ref().and_then(|u| u.get(username)).cloned()
    }
}

impl Sender for WaldurSender {
    fn send(&self, d: &Delivery, _run: Option<&JobRun>) -> Outcome {
        let client = match self.client() {
            Ok(c) => c,
            Err(reason) => return Outcome::Retry { reason, after_secs: None },
        };
        let r = match self.request(d) {
            Ok(r) => r,
            Err(e) => return Outcome::Rejected { reason: e.to_string() },
        };
        if let Some(reason) = self.closed(d, &r) {
            return Outcome::Rejected { reason };
        }
        let (resource, stored) = match self.stored(client, &r) {
            Ok(s) => s,
            Err(outcome) => return outcome,
        };
        let held = stored.as_ref().map(|s| (parse_cents(&s.usage), s.usage.as_str()));
        match held {
            // Waldur has it already: not posted again.
            Some((Some(c), _)) if c == r.cents => return Outcome::Delivered { remote_id: stored.map(|s| s.uuid) },
            Some((Some(c), text)) if c > r.cents && !self.cfg.allow_decrease => {
                return Outcome::Rejected {
                    reason: format!(
                        "Waldur has {text} for {} {} {}{}, the ledger's total is {}: posting it would lower Waldur's figure. \
                         Check the account's jobs; to post it, set allow_decrease = true and run `slurm-ledger retry --sink waldur`",
                        r.route.account,
                        r.route.month,
                        r.route.tres,
                        r.route.user.map(|u| format!(" user {u}")).unwrap_or_default(),
                        cents_text(r.cents)
                    ),
                }
            }
            _ => {}
        }
        let amount = cents_text(r.cents);
        match r.route.user {
            None => client.set_usage(&resource.uuid, r.route.tres, &amount, &r.date),
            Some(user) => {
                // The total's uuid: as read this pass, or read again (it may have been set since).
                let total = match self.total(client, &resource.uuid, &r.period, r.route.tres, true) {
                    Ok(Some(t)) => t,
                    Ok(None) => {
                        return Outcome::Retry {
                            reason: format!(
                                "the {} total of {} for {} is not on Waldur yet; the user's part follows it",
                                r.route.tres, r.route.account, r.route.month
                            ),
                            after_secs: None,
                        }
                    }
                    Err(reason) => return Outcome::Retry { reason, after_secs: None },
                };
                let username = self.cfg.username(user);
                let url = self.offering_user(client, username);
                client.set_user_usage(&total.uuid, username, url.as_deref(), &amount, &r.date)
            }
        }
    }

    /// Found when Waldur holds exactly this total (set semantics: a resend of the same value is
    /// harmless, but not needed).
    fn lookup(&self, d: &Delivery, _run: Option<&JobRun>) -> Lookup {
        let client = match self.client() {
            Ok(c) => c,
            Err(reason) => return Lookup::Failed { reason },
        };
        let r = match self.request(d) {
            Ok(r) => r,
            Err(e) => return Lookup::Failed { reason: e.to_string() },
        };
        match self.stored(client, &r) {
            Ok((_, Some(s))) if parse_cents(&s.usage) == Some(r.cents) => Lookup::Found { remote_id: Some(s.uuid) },
            Ok(_) => Lookup::NotFound,
            Err(
                Outcome::Retry { reason, .. }
                | Outcome::Throttled { reason, .. }
                | Outcome::Rejected { reason }
                | Outcome::Unknown { reason },
            ) => Lookup::Failed { reason },
            Err(Outcome::Delivered { .. }) => Lookup::NotFound,
        }
    }

    /// Resources are listed again each pass, and a month's grace is judged at its start.
    fn begin_pass(&self, now: UnixTime) {
        *self.resources.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.totals.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.parts.lock().unwrap_or_else(|p| p.into_inner()).clear();
        *self.offering_users.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
    }

    /// Past months need a staff token (Waldur refuses them from others): checked once, before a
    /// backfill reads anything. A dry run (no client) cannot ask and is not refused.
    fn reopen(&self, from: UnixTime, until: UnixTime, now: UnixTime) -> Result<(), ReopenError> {
        let utc = crate::meter::period::Calendar { kind: PeriodKind::Month, tz: jiff::tz::TimeZone::UTC };
        let (first, last) = (utc.label(from), utc.label(UnixTime(until.0 - 1)));
        *self.reopened.lock().unwrap_or_else(|p| p.into_inner()) = Some((first.clone(), last));
        let Some(client) = self.client.as_ref() else { return Ok(()) };
        let tz = jiff::tz::TimeZone::get(&self.cfg.timezone).map_err(|e| ReopenError::Refused(e.to_string()))?;
        let this_month = crate::meter::period::Calendar { kind: PeriodKind::Month, tz }.label(now);
        if first >= this_month {
            return Ok(());
        }
        match client.me().map_err(ReopenError::Unreachable)? {
            (_, true) => Ok(()),
            (user, false) => Err(ReopenError::Refused(format!(
                "the Waldur credentials' user {user:?} is not staff, and Waldur takes usage for months before this one \
                 ({first} on) only from staff: give the sink a staff user's credentials for the backfill"
            ))),
        }
    }

    /// `[sinks.waldur] concurrency`: totals are set one request each.
    fn concurrency(&self) -> usize {
        self.cfg.concurrency
    }

    /// A batch's totals (0) before its users' parts (1): a part needs its total's uuid.
    fn phase(&self, d: &Delivery) -> u8 {
        u8::from(Route::decode(d).is_ok_and(|r| r.user.is_some()))
    }

    /// Totals go one request each, so a batch bounds only the transactions around them (two
    /// per batch, each synced to disk): 256 keeps those off a pass's time, and a crash leaves
    /// at most 256 totals to look up.
    fn batch_size(&self) -> usize {
        256
    }

    /// `12.34 k-Hours`: the amount Waldur gets for `total`, in the component's unit.
    fn figure(&self, d: &Delivery, total: i64) -> Option<String> {
        let route = Route::decode(d).ok()?;
        let c = self.cfg.components.iter().find(|c| c.tres == route.tres)?;
        let amount = cents_text(c.unit_factor.cents(total));
        Some(match &c.measured_unit {
            Some(unit) => format!("{amount} {unit}"),
            None => format!("{amount} {} units", c.tres),
        })
    }

    fn describe(&self, d: &Delivery, _run: Option<&JobRun>) -> String {
        let r = match self.request(d) {
            Ok(r) => r,
            Err(e) => return format!("(cannot render: {e})"),
        };
        let base = &self.cfg.api_url;
        let amount = cents_text(r.cents);
        match r.route.user {
            None => format!(
                "POST {base}marketplace-component-usages/set_usage/\n{}",
                serde_json::json!({"usages": [{"type": r.route.tres, "amount": amount}], "resource": format!("<resource with backend_id {}>", r.route.account), "date": r.date})
            ),
            Some(user) => format!(
                "POST {base}marketplace-component-usages/<{} {} usage of {}>/set_user_usages/\n{}",
                r.route.month,
                r.route.tres,
                r.route.account,
                serde_json::json!({"usages": [{"username": self.cfg.username(user), "usage": amount, "date": r.date}]})
            ),
        }
    }
}
