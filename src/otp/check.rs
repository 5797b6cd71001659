//! A verification's life and the check state machine: what one check of a code does to it.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};

/// Where a verification is in its life, as stored; expiry is judged from the time instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerificationState {
    /// Sent, not yet verified.
    Pending,
    /// The right code was checked; the verification is used up.
    Approved,
    /// A newer code to the same number replaced it.
    Canceled,
    /// Every check was used on wrong codes.
    MaxAttemptsReached,
}

impl VerificationState {
    /// Every state.
    pub const ALL: [VerificationState; 4] = [
        VerificationState::Pending,
        VerificationState::Approved,
        VerificationState::Canceled,
        VerificationState::MaxAttemptsReached,
    ];

    /// The name used on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationState::Pending => "pending",
            VerificationState::Approved => "approved",
            VerificationState::Canceled => "canceled",
            VerificationState::MaxAttemptsReached => "max_attempts_reached",
        }
    }

    /// The status shown at `now`: a pending code past its expiry is `expired`.
    pub fn shown_at(self, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> &'static str {
        if self == VerificationState::Pending && now >= expires_at {
            "expired"
        } else {
            self.as_str()
        }
    }
}

impl fmt::Display for VerificationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that names no verification state.
#[derive(Debug, thiserror::Error)]
#[error("unknown verification state {0:?}")]
pub struct UnknownVerificationState(pub String);

impl FromStr for VerificationState {
    type Err = UnknownVerificationState;

    fn from_str(s: &str) -> Result<Self, UnknownVerificationState> {
        VerificationState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownVerificationState(s.to_string()))
    }
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The code matched; the verification is used up.
    Approved,
    /// Wrong code; this many checks are left.
    Incorrect(u32),
    /// No checks left (this one included).
    Exhausted,
    /// Past its expiry.
    Expired,
    /// Already approved.
    AlreadyUsed,
    /// Replaced by a newer code to the same number.
    Canceled,
    /// No such verification.
    NotFound,
}

/// A stored verification as a check sees it.
#[derive(Clone, Copy, Debug)]
pub struct CheckFacts {
    /// Its state.
    pub state: VerificationState,
    /// Checks made so far.
    pub checks: u32,
    /// Checks allowed.
    pub max_checks: u32,
    /// When the code stops working.
    pub expires_at: DateTime<Utc>,
}

/// What a check decided: its outcome, and the state and check count to store when it counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// What the caller is told.
    pub outcome: CheckOutcome,
    /// The new state and number of checks, when the check counted.
    pub record: Option<(VerificationState, u32)>,
}

/// One check at `now` of a code that `matched` the stored hash or not.
pub fn judge_check(facts: CheckFacts, now: DateTime<Utc>, matched: bool) -> Checked {
    let refused = |outcome| Checked {
        outcome,
        record: None,
    };
    match facts.state {
        VerificationState::Approved => return refused(CheckOutcome::AlreadyUsed),
        VerificationState::Canceled => return refused(CheckOutcome::Canceled),
        VerificationState::MaxAttemptsReached => return refused(CheckOutcome::Exhausted),
        VerificationState::Pending => {}
    }
    if now >= facts.expires_at {
        return refused(CheckOutcome::Expired);
    }
    if facts.checks >= facts.max_checks {
        return refused(CheckOutcome::Exhausted);
    }
    let checks = facts.checks + 1;
    let (state, outcome) = if matched {
        (VerificationState::Approved, CheckOutcome::Approved)
    } else if checks >= facts.max_checks {
        (
            VerificationState::MaxAttemptsReached,
            CheckOutcome::Incorrect(0),
        )
    } else {
        (
            VerificationState::Pending,
            CheckOutcome::Incorrect(facts.max_checks - checks),
        )
    };
    Checked {
        outcome,
        record: Some((state, checks)),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn pending(checks: u32, now: DateTime<Utc>) -> CheckFacts {
        CheckFacts {
            state: VerificationState::Pending,
            checks,
            max_checks: 3,
            expires_at: now + Duration::minutes(5),
        }
    }

    #[test]
    fn the_right_code_approves_and_counts_the_check() {
        let now = Utc::now();
        assert_eq!(
            judge_check(pending(1, now), now, true),
            Checked {
                outcome: CheckOutcome::Approved,
                record: Some((VerificationState::Approved, 2)),
            }
        );
    }

    #[test]
    fn wrong_codes_count_down_and_the_last_one_exhausts_the_verification() {
        let now = Utc::now();
        assert_eq!(
            judge_check(pending(0, now), now, false),
            Checked {
                outcome: CheckOutcome::Incorrect(2),
                record: Some((VerificationState::Pending, 1)),
            }
        );
        assert_eq!(
            judge_check(pending(2, now), now, false),
            Checked {
                outcome: CheckOutcome::Incorrect(0),
                record: Some((VerificationState::MaxAttemptsReached, 3)),
            }
        );
    }

    #[test]
    fn a_used_up_verification_refuses_even_the_right_code_without_counting() {
        let now = Utc::now();
        let exhausted = CheckFacts {
            state: VerificationState::MaxAttemptsReached,
            ..pending(3, now)
        };
        assert_eq!(
            judge_check(exhausted, now, true).outcome,
            CheckOutcome::Exhausted
        );
        assert_eq!(
            judge_check(pending(3, now), now, true),
            Checked {
                outcome: CheckOutcome::Exhausted,
                record: None,
            }
        );
    }

    #[test]
    fn approved_and_canceled_verifications_answer_without_counting() {
        let now = Utc::now();
        for (state, outcome) in [
            (VerificationState::Approved, CheckOutcome::AlreadyUsed),
            (VerificationState::Canceled, CheckOutcome::Canceled),
        ] {
            let facts = CheckFacts {
                state,
                ..pending(0, now)
            };
            assert_eq!(
                judge_check(facts, now, true),
                Checked {
                    outcome,
                    record: None
                }
            );
        }
    }

    #[test]
    fn a_code_expires_at_its_expiry_and_is_then_shown_expired() {
        let now = Utc::now();
        let facts = pending(0, now);
        let at_expiry = facts.expires_at;
        assert_eq!(
            judge_check(facts, at_expiry, true).outcome,
            CheckOutcome::Expired
        );
        assert_eq!(facts.state.shown_at(facts.expires_at, at_expiry), "expired");
        assert_eq!(facts.state.shown_at(facts.expires_at, now), "pending");
        assert_eq!(
            VerificationState::Approved.shown_at(facts.expires_at, at_expiry),
            "approved"
        );
    }

    #[test]
    fn every_state_round_trips_through_its_name() {
        for state in VerificationState::ALL {
            assert_eq!(state.as_str().parse::<VerificationState>().unwrap(), state);
        }
        assert!("expired".parse::<VerificationState>().is_err());
    }
}
