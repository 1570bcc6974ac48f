//! Which system answers a request, as the command line and eval result files spell it
//! (`target-only`); the wire and HTTP JSON spell it with [`SolveMode::label`] (`target_only`).

use clap::builder::PossibleValue;
use scot_proto::SolveMode;

/// The full SCoT pipeline or one of the two models alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    #[default]
    Scot,
    TargetOnly,
    DraftOnly,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Scot, Mode::TargetOnly, Mode::DraftOnly];

    /// The command-line value, also the `mode` of eval result lines.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Scot => "scot",
            Mode::TargetOnly => "target-only",
            Mode::DraftOnly => "draft-only",
        }
    }

    /// The mode a command-line value or result line names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.name() == name)
    }

    /// What the request asks the coordinator for.
    pub fn proto(self) -> SolveMode {
        match self {
            Mode::Scot => SolveMode::Scot,
            Mode::TargetOnly => SolveMode::TargetOnly,
            Mode::DraftOnly => SolveMode::DraftOnly,
        }
    }
}

/// Clap parses and lists exactly [`Mode::name`], so the flag and the result files cannot drift apart.
impl clap::ValueEnum for Mode {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    #[test]
    fn spellings_round_trip_and_map_to_the_wire() {
        for mode in Mode::ALL {
            assert_eq!(Mode::from_name(mode.name()), Some(mode));
            assert_eq!(Mode::from_str(mode.name(), false), Ok(mode));
        }
        assert_eq!(Mode::TargetOnly.name(), "target-only");
        assert_eq!(Mode::DraftOnly.name(), "draft-only");
        assert_eq!(Mode::from_name("target_only"), None);
        assert_eq!(Mode::TargetOnly.proto(), SolveMode::TargetOnly);
        assert_eq!(Mode::TargetOnly.proto().label(), "target_only");
        assert_eq!(Mode::DraftOnly.proto(), SolveMode::DraftOnly);
        assert_eq!(Mode::Scot.proto(), SolveMode::Scot);
    }
}
