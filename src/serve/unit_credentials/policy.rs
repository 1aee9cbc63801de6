//! Who gets credentials for which unit: the `[[unit]]` entries applied to a peer's uid
//! (`SO_PEERCRED`) and the unit its name claims.
//!
//! - A peer with uid 0 is the system manager (or root, who can read IMDS anyway): the
//!   first entry without `user` that names the unit decides its profile.
//! - Any other peer is refused, whatever name it bound (anyone can bind
//!   `\0…/unit/backup.service/aws`), unless an entry with `user` names that uid: then it is
//!   that user's manager, and the first such entry that names the unit decides.
//! - A unit no entry names gets nothing.

use crate::config::units::resolve_user;
use crate::config::UnitConfig;
use thiserror::Error;

/// Why a peer gets nothing. Logged; never sent (the connection closes without a byte).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// The peer is no system manager and no `[[unit]]` entry names its user.
    #[error("the peer is not the system manager (uid {uid}, not 0) and no [[unit]] entry names its user")]
    NotAManager {
        /// The peer's uid.
        uid: u32,
    },
    /// No `[[unit]]` entry names this unit.
    #[error("no [[unit]] entry names this unit for this manager")]
    Unlisted,
}

/// The `[[unit]]` entries, each with the uid of its manager.
#[derive(Debug, Clone, Default)]
pub struct UnitPolicy {
    entries: Vec<(UnitConfig, u32)>,
}

impl UnitPolicy {
    /// The entries as configured (`check-config` made sure each `user` exists; one that no
    /// longer resolves names no unit, and the log says so).
    pub fn from_config(units: &[UnitConfig]) -> Self {
        let entries = units
            .iter()
            .filter_map(|unit| match &unit.user {
                None => Some((unit.clone(), 0)),
                Some(user) => match resolve_user(user) {
                    Ok(uid) => Some((unit.clone(), uid)),
                    Err(problem) => {
                        tracing::warn!(unit = unit.name, problem, "[[unit]] entry ignored");
                        None
                    }
                },
            })
            .collect();
        UnitPolicy { entries }
    }

    /// Whether any entry exists: without one, the socket is served only if systemd passed it.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an entry names a user: that user's manager must reach the socket, through
    /// the mode or ACL the operator gave it.
    pub fn serves_user_managers(&self) -> bool {
        self.entries.iter().any(|(entry, _)| entry.user.is_some())
    }

    /// The profile (`None`: the instance role) that `unit` gets when asked for by a peer
    /// with `uid`, or why it gets nothing.
    pub fn decide(&self, uid: u32, unit: &str) -> Result<Option<&str>, Refusal> {
        let mut of_manager = self
            .entries
            .iter()
            .filter(|(entry, manager)| *manager == uid && (uid == 0) == entry.user.is_none())
            .peekable();
        if uid != 0 && of_manager.peek().is_none() {
            return Err(Refusal::NotAManager { uid });
        }
        of_manager
            .find(|(entry, _)| entry.matches(unit))
            .map(|(entry, _)| entry.profile())
            .ok_or(Refusal::Unlisted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, profile: &str, user: Option<&str>) -> UnitConfig {
        UnitConfig {
            name: name.into(),
            profile: profile.into(),
            user: user.map(str::to_string),
        }
    }

    #[test]
    fn the_system_manager_gets_the_units_entries_name_and_nothing_else() {
        let policy = UnitPolicy::from_config(&[
            entry("backup.service", "", None),
            entry("report-*.service", "audit", None),
            entry("report-x.service", "other", None),
        ]);
        assert_eq!(policy.decide(0, "backup.service"), Ok(None));
        assert_eq!(
            policy.decide(0, "report-x.service"),
            Ok(Some("audit")),
            "first match"
        );
        assert_eq!(policy.decide(0, "other.service"), Err(Refusal::Unlisted));
    }

    #[test]
    fn any_other_uid_is_refused_whatever_unit_it_claims() {
        let policy = UnitPolicy::from_config(&[entry("backup.service", "", None)]);
        assert_eq!(
            policy.decide(1000, "backup.service"),
            Err(Refusal::NotAManager { uid: 1000 })
        );
        assert!(UnitPolicy::default().decide(0, "backup.service").is_err());
    }

    #[test]
    fn a_user_manager_gets_only_its_own_entries_and_root_not_those() {
        let policy = UnitPolicy::from_config(&[
            entry("sync.service", "", Some("1000")),
            entry("backup.service", "audit", Some("1000")),
            entry("backup.service", "", None),
        ]);
        assert_eq!(policy.decide(1000, "backup.service"), Ok(Some("audit")));
        assert_eq!(policy.decide(1000, "sync.service"), Ok(None));
        assert_eq!(policy.decide(1000, "x.service"), Err(Refusal::Unlisted));
        assert_eq!(
            policy.decide(1001, "sync.service"),
            Err(Refusal::NotAManager { uid: 1001 })
        );
        assert_eq!(policy.decide(0, "sync.service"), Err(Refusal::Unlisted));
        assert_eq!(policy.decide(0, "backup.service"), Ok(None));
    }

    #[test]
    fn a_user_entry_naming_root_does_not_stand_for_the_system_manager() {
        let policy = UnitPolicy::from_config(&[entry("a.service", "", Some("root"))]);
        assert_eq!(policy.decide(0, "a.service"), Err(Refusal::Unlisted));
    }
}
