//! The embedded default: recorded real Slurm 22.05.8 output that the demo (and tests) replay
//! through the real pipeline, so a fresh machine without Slurm can run everything.
//!
//! Every file comes from the project's Slurm 22.05 testbed: `tests/fixtures/samples/PROVENANCE.md`
//! says how each was recorded (each `.cmd` beside a file holds its exact command), and
//! `testbed/README.md` names the scenario behind each job id.

use std::sync::Arc;

use crate::model::UnixTime;
use crate::slurm::runner::{Recording, ReplayRunner};

/// slurm-ledger's own poll (`sacct --allusers --duplicates --parsable2 --delimiter=0x1F
/// --noconvert --format=…`), recorded on the testbed through `scripts/record-wrapper`.
pub const SACCT_POLL: &[u8] = include_bytes!("../tests/fixtures/testbed/own-sacct-poll.txt");
/// `sacct --helpformat` of Slurm 22.05.8.
pub const SACCT_HELPFORMAT: &[u8] = include_bytes!("../tests/fixtures/testbed/sacct-helpformat.txt");
/// `sacct --version` of the testbed.
pub const SLURM_VERSION: &[u8] = include_bytes!("../tests/fixtures/testbed/own-sacct-version.txt");
/// `scontrol show config` (names the cluster).
pub const SCONTROL_CONFIG: &[u8] = include_bytes!("../tests/fixtures/testbed/own-scontrol-show-config.txt");

/// The instant the recorded poll ended (its `--endtime`): the demo's "now".
pub const RECORDED_AT: UnixTime = UnixTime(1_795_312_830); // 2026-11-22T02:00:30Z

/// A runner that answers the demo's Slurm calls from the recordings.
pub fn replay_runner() -> ReplayRunner {
    ReplayRunner::new(vec![
        Recording::ok("sacct", &["--version"], Arc::<[u8]>::from(SLURM_VERSION)),
        Recording::ok("sacct", &["--helpformat"], Arc::<[u8]>::from(SACCT_HELPFORMAT)),
        Recording::ok("scontrol", &["show", "config"], Arc::<[u8]>::from(SCONTROL_CONFIG)),
        Recording::ok("sacct", &["--parsable2"], Arc::<[u8]>::from(SACCT_POLL)),
    ])
}
