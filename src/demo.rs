//! The embedded default: recorded real Slurm 22.05.8 output that the demo (and tests) replay
//! through the real pipeline, so a fresh machine without Slurm can run everything.
//!
//! Every file comes from the project's Slurm 22.05 testbed; `tests/fixtures/testbed/INDEX.md`
//! names the command behind each.

use std::sync::Arc;

use crate::model::UnixTime;
use crate::slurm::runner::{Recording, ReplayRunner};

/// The recorded poll: `sacct -a --duplicates --parsable2 -o ALL` over the testbed's seed day.
pub const SACCT_POLL: &[u8] = include_bytes!("../tests/fixtures/testbed/sacct-all-fields-duplicates.txt");
/// `sacct --helpformat` of Slurm 22.05.8.
pub const SACCT_HELPFORMAT: &[u8] = include_bytes!("../tests/fixtures/testbed/sacct-helpformat.txt");
/// The version line of the testbed's Slurm client.
pub const SLURM_VERSION: &[u8] = include_bytes!("../tests/fixtures/testbed/scontrol-version.txt");
/// `scontrol show config` (names the cluster).
pub const SCONTROL_CONFIG: &[u8] = include_bytes!("../tests/fixtures/testbed/scontrol-show-config.txt");

/// The instant the recording ends: the demo's "now".
pub const RECORDED_AT: UnixTime = UnixTime(1_795_307_400); // 2026-11-22T00:30:00Z

/// A runner that answers the demo's Slurm calls from the recordings.
pub fn replay_runner() -> ReplayRunner {
    ReplayRunner::new(vec![
        Recording::ok("sacct", &["--version"], Arc::<[u8]>::from(SLURM_VERSION)),
        Recording::ok("sacct", &["--helpformat"], Arc::<[u8]>::from(SACCT_HELPFORMAT)),
        Recording::ok("scontrol", &["show", "config"], Arc::<[u8]>::from(SCONTROL_CONFIG)),
        Recording::ok("sacct", &["--parsable2"], Arc::<[u8]>::from(SACCT_POLL)),
    ])
}
