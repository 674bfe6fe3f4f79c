//! All integration tests, linked as one binary (`cargo test --test it`).
//!
//! - `parsers`: every recorded Slurm text output in tests/fixtures (see the PROVENANCE/INDEX files).
//! - `captures`: every file of the testbed capture is exercised; what cannot be read as jobs is refused by name.
//! - `collect_replay`: the collect pipeline on replayed recordings, with injected sacct faults.
//! - `malformed`: bad input is quarantined with a reason, never a panic, never a lost row.
//! - `cli`: the binary as an admin uses it (help, errors, exit codes, demo).
//! - `hook`: `slurm-ledger hook` as slurmctld runs it (exits 0 whatever happens, fast, no config or ledger read); only the socket's group can send; live: slurmctld runs it at each job's start and end.
//! - `kills`: the seeded die and quiet simulated kills the kill-and-fault tests share.
//! - `fakes`: loopback fakes of the delivery platforms (ACTIVATE, Waldur), enforcing their contracts; `fake_activate` tests them.
//! - `fake_waldur`: the Waldur fake itself: token auth, OIDC Bearer tokens from its token endpoint, set semantics, 2-decimal amounts, unknown component/resource, past periods for non-staff, pagination, faults.
//! - `fake_cc_backend`: the cc-backend fake itself: `X-Auth-Token` auth, Go's strict decoding (unknown fields, wrong types), the sanity checks, 422 on duplicates and on a second stop, a stop matched by startTime, running jobs listed, node states, faults.
//! - `deliver_activate`: `deliver`/`retry`/`status` against the ACTIVATE fake, on a recorded poll: exact totals, faults, dry run, held, rejected.
//! - `deliver_cc_backend`: `deliver` to the cc-backend fake on the recorded poll: each started run started once, each ended run stopped once by its start time, faults, the duplicate rule shown.
//! - `deliver_nats`: `deliver` to Debian's real nats-server (JetStream) on the recorded poll: one start and one stop per run with their bodies, nothing twice when acks or publishes are lost or the server is down, user/password, token and nkey logins (a wrong one named without its secret), the line protocol read strictly, `--dry-run`.
//! - `nats_server`: a real nats-server per test (free loopback port, killed on drop), a faulty loopback proxy, a JetStream admin client.
//! - `deliver_waldur`: `deliver` to the Waldur fake on the recorded poll: month totals per resource, component and user exact to the cent, nothing posted twice, faults, an account without a resource.
//! - `waldur_oidc`: `deliver` to the Waldur fake with OIDC client credentials: exact totals, one token per pass, a revoked token renewed once on 401, a wrong secret named by its token URL and never shown, a readable secret file warned about.
//! - `migrate_tracker`: the switch from slurm-tracker (crontab args, config.json, state DB): nothing billed twice.
//! - `migrate_waldur`: the switch from waldur-site-agent's report mode: its example YAML → `[sinks.waldur]` fragments (snapshot) that pass `config check`; no secret of the YAML shown; bad input exits 2.
//! - `testbed`: against the live Slurm 22.05 testbed (testbed/slurm-testbed.sh), when present.
//! - `terms_change`: a sink's config changed between passes every way it can: billed exactly, or refused until restored or accepted.
//! - `toy_consumer`: a consumer that is not a slice sink (each finished run recorded once), on the public interface, under kills.
//! - `toy_totals`: a consumer of totals set on the far side (Waldur's shape): exact per account, unchanged totals not resent, under kills.
//! - `odd_input`: what admins feed it: a state this reader does not know (shown, billed as not final), a layout without ElapsedRaw/Elapsed (derived or held), two rows of one run (the first kept), a layout without the node/CPU count columns (AllocTRES tells them) or without JobIDRaw (plain JobIDs key their runs, arrays and hets held).
//! - `backfill`: `backfill` to the Waldur fake with a recorded-output sacct: windows, the staff check, a failed month isolated, resumed without redoing a month; reporting to Waldur adds no sacct call.
//! - `backlog`: a backlog beyond the old per-pass cap drains in one `deliver`; `status` shows it and its age until then.
//! - `upgrade`: a ledger written by the schema-4 release (tests/fixtures/ledger-v4) upgraded: nothing lost, nothing billed again.
//! - `chaos`: what the chaos tests share: the seeded job mix on the testbed, `sacct`'s view of it, the SIGKILL loop and the clean passes.
//! - `chaos_activate`: exactly-once to the ACTIVATE fake under injected faults and SIGKILLed runs, over real jobs on the testbed.
//! - `chaos_waldur`: the Waldur fake's month totals per resource, component and user under faults and SIGKILLed runs, over real jobs on the testbed: exact to the cent against the ledger and `sacct`, nothing posted twice.
//! - `daemon_chaos`: the daemon over the live testbed with the hook, SIGKILLed at random and restarted, cc-backend and nats-server stopped and started again, cc-backend's faults on and off: each run's start and stop once in cc-backend (one row per requeued job) and in the NATS stream, against `sacct`.
//! - `metrics`: the daemon's `/metrics` and `/healthz` over TCP; what it serves read by Python's `prometheus_client` parsers (text 0.0.4, OpenMetrics) from `scripts/py-venv`; broken bodies refused; errors, a silent client, a taken address, stop.
//! - `layers`: the module layering of src/ (each module uses only lower layers, no cycles); `scripts/deps` prints it.

mod backfill;
mod backlog;
mod captures;
mod chaos;
mod chaos_activate;
mod chaos_waldur;
mod cli;
mod collect_replay;
mod common;
mod daemon;
mod daemon_chaos;
mod daemon_live;
mod deliver_activate;
mod deliver_cc_backend;
mod deliver_nats;
mod deliver_throttle;
mod deliver_waldur;
mod fake_activate;
mod fake_cc_backend;
mod fake_waldur;
mod fakes;
mod hook;
mod kills;
mod layers;
mod malformed;
mod metrics;
mod migrate_tracker;
mod migrate_waldur;
mod nats_server;
mod odd_input;
mod parsers;
mod terms_change;
mod testbed;
mod toy_consumer;
mod toy_totals;
mod upgrade;
mod waldur_oidc;
