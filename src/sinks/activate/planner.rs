//! How ACTIVATE prices a run for the shared slice planner: the billed TRES of `[sinks.activate]`
//! in hours (or GiB-hours), routed to the allocation of the run's account and the SKU of its
//! partition (the route also pins the TRES's name the event carries). A run that maps to nothing is held with the key to add; it is never guessed.

use crate::delivery::slices::{Price, Pricing};
use crate::model::JobRun;

use super::config::ActivateSettings;
use super::event::Route;

/// ACTIVATE's [`Pricing`].
pub struct ActivatePricing {
    cfg: ActivateSettings,
}

impl ActivatePricing {
    pub fn new(cfg: ActivateSettings) -> Self {
        Self { cfg }
    }
}

impl Pricing for ActivatePricing {
    fn price(&self, job: &JobRun) -> Result<Price, String> {
        let route = Route::of(&self.cfg, job)?.encode();
        let m = &self.cfg.metering;
        Ok(Price { count: m.count(job), unit: m.unit(), route: Some(route) })
    }

    /// Today's allocation and SKU; the TRES the item was metered as.
    fn reroute(&self, job: &JobRun, old: Option<&str>) -> Result<Option<String>, String> {
        let now = Route::of(&self.cfg, job)?;
        let tres = old.and_then(|r| r.split('\u{1f}').nth(2)).unwrap_or(now.tres);
        Ok(Some(Route { tres, ..now }.encode()))
    }
}
