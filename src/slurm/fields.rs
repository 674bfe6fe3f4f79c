//! The sacct columns slurm-ledger reads, and which of them a given sacct can print.
//!
//! sacct rejects the whole command when one `--format` field is unknown to it (22.05 has no
//! `Planned`, 21.08 no `SubmitLine` on some builds), so the request is the intersection of
//! [`Field::ALL`] with what the installed sacct lists in `sacct --helpformat` — a local call that
//! does not touch slurmdbd. Without that list, only fields every supported version (≥ 21.08) has
//! are requested.

/// A sacct column that slurm-ledger understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    JobID,
    JobIDRaw,
    Cluster,
    JobName,
    User,
    UID,
    Group,
    Account,
    Partition,
    QOS,
    State,
    ExitCode,
    DerivedExitCode,
    Submit,
    Eligible,
    Start,
    End,
    ElapsedRaw,
    Elapsed,
    Suspended,
    TimelimitRaw,
    Timelimit,
    NNodes,
    AllocNodes,
    AllocCPUS,
    NCPUS,
    ReqCPUS,
    ReqMem,
    ReqTRES,
    AllocTRES,
    NodeList,
    TotalCPU,
    UserCPU,
    SystemCPU,
    MaxRSS,
    TRESUsageInTot,
    ConsumedEnergyRaw,
    WCKey,
    Reservation,
    Flags,
    DBIndex,
    WorkDir,
    SubmitLine,
}

/// Number of [`Field`] variants.
pub const FIELD_COUNT: usize = Field::ALL.len();

impl Field {
    /// Every field, in the order slurm-ledger requests them.
    pub const ALL: [Field; 43] = [
        Field::JobID,
        Field::JobIDRaw,
        Field::Cluster,
        Field::JobName,
        Field::User,
        Field::UID,
        Field::Group,
        Field::Account,
        Field::Partition,
        Field::QOS,
        Field::State,
        Field::ExitCode,
        Field::DerivedExitCode,
        Field::Submit,
        Field::Eligible,
        Field::Start,
        Field::End,
        Field::ElapsedRaw,
        Field::Elapsed,
        Field::Suspended,
        Field::TimelimitRaw,
        Field::Timelimit,
        Field::NNodes,
        Field::AllocNodes,
        Field::AllocCPUS,
        Field::NCPUS,
        Field::ReqCPUS,
        Field::ReqMem,
        Field::ReqTRES,
        Field::AllocTRES,
        Field::NodeList,
        Field::TotalCPU,
        Field::UserCPU,
        Field::SystemCPU,
        Field::MaxRSS,
        Field::TRESUsageInTot,
        Field::ConsumedEnergyRaw,
        Field::WCKey,
        Field::Reservation,
        Field::Flags,
        Field::DBIndex,
        Field::WorkDir,
        Field::SubmitLine,
    ];

    /// The column name as sacct spells it in `--format` and in its header.
    pub fn name(self) -> &'static str {
        match self {
            Field::JobID => "JobID",
            Field::JobIDRaw => "JobIDRaw",
            Field::Cluster => "Cluster",
            Field::JobName => "JobName",
            Field::User => "User",
            Field::UID => "UID",
            Field::Group => "Group",
            Field::Account => "Account",
            Field::Partition => "Partition",
            Field::QOS => "QOS",
            Field::State => "State",
            Field::ExitCode => "ExitCode",
            Field::DerivedExitCode => "DerivedExitCode",
            Field::Submit => "Submit",
            Field::Eligible => "Eligible",
            Field::Start => "Start",
            Field::End => "End",
            Field::ElapsedRaw => "ElapsedRaw",
            Field::Elapsed => "Elapsed",
            Field::Suspended => "Suspended",
            Field::TimelimitRaw => "TimelimitRaw",
            Field::Timelimit => "Timelimit",
            Field::NNodes => "NNodes",
            Field::AllocNodes => "AllocNodes",
            Field::AllocCPUS => "AllocCPUS",
            Field::NCPUS => "NCPUS",
            Field::ReqCPUS => "ReqCPUS",
            Field::ReqMem => "ReqMem",
            Field::ReqTRES => "ReqTRES",
            Field::AllocTRES => "AllocTRES",
            Field::NodeList => "NodeList",
            Field::TotalCPU => "TotalCPU",
            Field::UserCPU => "UserCPU",
            Field::SystemCPU => "SystemCPU",
            Field::MaxRSS => "MaxRSS",
            Field::TRESUsageInTot => "TRESUsageInTot",
            Field::ConsumedEnergyRaw => "ConsumedEnergyRaw",
            Field::WCKey => "WCKey",
            Field::Reservation => "Reservation",
            Field::Flags => "Flags",
            Field::DBIndex => "DBIndex",
            Field::WorkDir => "WorkDir",
            Field::SubmitLine => "SubmitLine",
        }
    }

    /// Finds a field by sacct's column name, case-insensitively (`jobid`, `JobIDRaw`, `NCPUS`).
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// Index of the field in [`Field::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Fields that every sacct slurm-ledger supports (21.08 and later) prints.
    fn in_every_supported_version(self) -> bool {
        !matches!(self, Field::SubmitLine)
    }
}

/// The `--format` list for a sacct whose `--helpformat` printed `helpformat`, or, when that is
/// unknown, the fields of every supported version.
pub fn request_fields(helpformat: Option<&str>) -> Vec<Field> {
    match helpformat {
        Some(text) => {
            let known: std::collections::HashSet<String> =
                text.split_whitespace().map(|w| w.to_ascii_lowercase()).collect();
            Field::ALL.iter().copied().filter(|f| known.contains(&f.name().to_ascii_lowercase())).collect()
        }
        None => Field::ALL.iter().copied().filter(|f| f.in_every_supported_version()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wanted_field_exists_in_22_05() {
        // Recorded `sacct --helpformat` of the Slurm 22.05.8 testbed.
        let help = include_str!("../../tests/fixtures/testbed/sacct-helpformat.txt");
        let fields = request_fields(Some(help));
        assert_eq!(fields.len(), Field::ALL.len(), "22.05 knows all fields slurm-ledger reads");
        // A sacct that lacks a field is not asked for it.
        let fewer = help.replace("SubmitLine", "").replace("DBIndex", "");
        let fields = request_fields(Some(&fewer));
        assert!(!fields.contains(&Field::SubmitLine) && !fields.contains(&Field::DBIndex));
        assert!(fields.contains(&Field::JobIDRaw));
    }

    #[test]
    fn names_roundtrip() {
        for f in Field::ALL {
            assert_eq!(Field::from_name(f.name()), Some(f));
            assert_eq!(Field::ALL[f.index()], f);
        }
        assert_eq!(Field::from_name("jobidraw"), Some(Field::JobIDRaw));
    }
}
