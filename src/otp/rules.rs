//! Whether an OTP may be sent: cool-down, per-number/IP/device limits, and the SMS-pumping
//! breaker (a burst to one block of numbers, or a number range whose codes stop being verified).
//!
//! A store counts the [`SendFacts`] inside the transaction that stores the code, over the
//! [`Windows`] these rules name, and writes what the [`Verdict`] says; it decides nothing itself.

use chrono::{DateTime, Duration, Utc};

/// The anti-fraud limits an OTP send is checked against.
#[derive(Clone, Debug)]
pub struct OtpLimits {
    /// Seconds between two codes to one number.
    pub cooldown_seconds: i64,
    /// Codes per number in the window.
    pub per_number: i64,
    /// Codes per client IP in the window.
    pub per_ip: i64,
    /// Codes per device in the window.
    pub per_device: i64,
    /// The window, in seconds.
    pub window_seconds: i64,
    /// Breaker: window, in seconds.
    pub pumping_window_seconds: i64,
    /// Breaker: codes younger than this are not judged yet.
    pub pumping_grace_seconds: i64,
    /// Breaker: judged codes needed before judging.
    pub pumping_min_sends: i64,
    /// Breaker: verified share below which the prefix trips.
    pub pumping_min_conversion: f64,
    /// Breaker: how long a tripped prefix stays blocked.
    pub pumping_block_seconds: i64,
    /// Burst rule: codes to one burst prefix within the burst window that trip the breaker (0: off).
    pub burst_max_sends: i64,
    /// Burst rule: the window, in seconds.
    pub burst_window_seconds: i64,
}

/// The periods a store counts codes over for one send at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Per-number/IP/device limits count codes sent after this.
    pub sends_after: DateTime<Utc>,
    /// The burst rule counts codes to the burst block sent after this.
    pub burst_after: DateTime<Utc>,
    /// The breaker judges codes to the range sent after this…
    pub judged_after: DateTime<Utc>,
    /// …and at or before this (younger ones may still be verified).
    pub judged_until: DateTime<Utc>,
}

impl OtpLimits {
    /// The periods to count over for a send at `now`.
    pub fn windows(&self, now: DateTime<Utc>) -> Windows {
        Windows {
            sends_after: now - Duration::seconds(self.window_seconds),
            burst_after: now - Duration::seconds(self.burst_window_seconds),
            judged_after: now - Duration::seconds(self.pumping_window_seconds),
            judged_until: now - Duration::seconds(self.pumping_grace_seconds),
        }
    }
}

/// Codes sent to one number, IP or device within the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCount {
    /// How many.
    pub count: i64,
    /// When the oldest of them was sent.
    pub oldest: Option<DateTime<Utc>>,
}

/// What a store read, in the sending transaction, about the number, its ranges and the client.
#[derive(Clone, Debug, Default)]
pub struct SendFacts {
    /// The number is on the allow list (test handsets, staff).
    pub allow_listed: bool,
    /// The latest pause of the number's range or burst block, whether or not it is over.
    pub paused_until: Option<DateTime<Utc>>,
    /// When the last code went to the number.
    pub last_sent: Option<DateTime<Utc>>,
    /// Codes to the number in the window.
    pub to_number: WindowCount,
    /// Codes to the request's client IP in the window, when it gave one.
    pub client_ip: Option<WindowCount>,
    /// Codes to the request's device in the window, when it gave one.
    pub device_id: Option<WindowCount>,
    /// Codes to the number's burst block in the burst window.
    pub burst: i64,
    /// Codes to the number's range old enough to judge, in the breaker's window.
    pub judged: i64,
    /// How many of the judged codes were verified.
    pub verified: i64,
}

/// Which prefix a tripped breaker pauses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paused {
    /// The number range (`otp.pumping.prefix_digits`).
    Range,
    /// The block of 10,000 numbers (all but the last four digits).
    BurstBlock,
}

/// A refused send, in the caller's words.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// Which limit, in words.
    pub reason: String,
    /// Seconds until a send may succeed.
    pub retry_after: i64,
    /// The breaker tripped on this very send.
    pub tripped: bool,
}

/// What to do with a send.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Send the code.
    Send,
    /// Refuse it.
    Refuse(Refusal),
    /// Refuse it and pause the prefix: store the pause, then refuse.
    Trip {
        /// Which prefix to pause.
        prefix: Paused,
        /// Until when.
        until: DateTime<Utc>,
        /// Why, kept with the pause.
        cause: String,
        /// What the caller is told.
        refusal: Refusal,
    },
}

/// A limit that refuses, with the whole seconds (at least one) until it would not.
fn refuse(reason: impl Into<String>, wait: Duration) -> Verdict {
    Verdict::Refuse(Refusal {
        reason: reason.into(),
        retry_after: (wait.num_milliseconds() + 999).div_euclid(1000).max(1),
        tripped: false,
    })
}

fn trip(prefix: Paused, cause: String, limits: &OtpLimits, now: DateTime<Utc>) -> Verdict {
    Verdict::Trip {
        prefix,
        until: now + Duration::seconds(limits.pumping_block_seconds),
        refusal: Refusal {
            reason: format!(
                "codes to this number range are paused: {cause} (suspected SMS pumping)"
            ),
            retry_after: limits.pumping_block_seconds,
            tripped: true,
        },
        cause,
    }
}

/// Judge one send at `now` from what the store counted.
pub fn judge_send(facts: &SendFacts, limits: &OtpLimits, now: DateTime<Utc>) -> Verdict {
    // Allow-listed numbers (test handsets, staff) skip velocity limits and the breaker.
    if facts.allow_listed {
        return Verdict::Send;
    }
    if let Some(until) = facts.paused_until.filter(|until| *until > now) {
        return refuse(
            "codes to this number range are paused: its codes stopped being verified (suspected SMS pumping)",
            until - now,
        );
    }
    let cooldown = Duration::seconds(limits.cooldown_seconds);
    if let Some(last) = facts.last_sent.filter(|last| now - *last < cooldown) {
        return refuse(
            format!(
                "a code was sent to this number less than {} s ago",
                limits.cooldown_seconds
            ),
            last + cooldown - now,
        );
    }
    let window = Duration::seconds(limits.window_seconds);
    let counted = [
        (Some(facts.to_number), limits.per_number, "this number"),
        (facts.client_ip, limits.per_ip, "this client_ip"),
        (facts.device_id, limits.per_device, "this device_id"),
    ];
    for (sent, max, what) in counted {
        if let Some(sent) = sent.filter(|sent| sent.count >= max) {
            return refuse(
                format!(
                    "{what} was sent {max} codes in the last {} s",
                    limits.window_seconds
                ),
                sent.oldest.unwrap_or(now) + window - now,
            );
        }
    }
    // A burst to one block of numbers is pumping however the older codes converted: waiting for
    // the grace period would let the whole burst out.
    if limits.burst_max_sends > 0 && facts.burst >= limits.burst_max_sends {
        let cause = format!(
            "{} codes to numbers sharing all but their last four digits in the last {} s",
            facts.burst, limits.burst_window_seconds
        );
        return trip(Paused::BurstBlock, cause, limits, now);
    }
    let conversion = if facts.judged == 0 {
        1.0
    } else {
        facts.verified as f64 / facts.judged as f64
    };
    if facts.judged >= limits.pumping_min_sends && conversion < limits.pumping_min_conversion {
        let cause = format!(
            "{} of {} codes verified ({:.0}%) in the last {} s",
            facts.verified,
            facts.judged,
            conversion * 100.0,
            limits.pumping_window_seconds
        );
        return trip(Paused::Range, cause, limits, now);
    }
    Verdict::Send
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> OtpLimits {
        OtpLimits {
            cooldown_seconds: 30,
            per_number: 5,
            per_ip: 20,
            per_device: 10,
            window_seconds: 600,
            pumping_window_seconds: 3600,
            pumping_grace_seconds: 120,
            pumping_min_sends: 20,
            pumping_min_conversion: 0.3,
            pumping_block_seconds: 43200,
            burst_max_sends: 10,
            burst_window_seconds: 60,
        }
    }

    fn refusal(verdict: Verdict) -> Refusal {
        match verdict {
            Verdict::Refuse(r) => r,
            Verdict::Trip { refusal, .. } => refusal,
            Verdict::Send => panic!("sent"),
        }
    }

    #[test]
    fn a_quiet_number_is_sent_its_code() {
        assert_eq!(
            judge_send(&SendFacts::default(), &limits(), Utc::now()),
            Verdict::Send
        );
    }

    #[test]
    fn the_windows_end_at_now_and_judging_stops_at_the_grace_period() {
        let now = Utc::now();
        let w = limits().windows(now);
        assert_eq!(now - w.sends_after, Duration::seconds(600));
        assert_eq!(now - w.burst_after, Duration::seconds(60));
        assert_eq!(now - w.judged_after, Duration::seconds(3600));
        assert_eq!(now - w.judged_until, Duration::seconds(120));
    }

    #[test]
    fn a_resend_within_the_cooldown_waits_for_the_rest_of_it_rounded_up() {
        let now = Utc::now();
        let facts = SendFacts {
            last_sent: Some(now - Duration::milliseconds(10_500)),
            ..SendFacts::default()
        };
        let r = refusal(judge_send(&facts, &limits(), now));
        assert_eq!(
            r.reason,
            "a code was sent to this number less than 30 s ago"
        );
        assert_eq!((r.retry_after, r.tripped), (20, false));
        let later = SendFacts {
            last_sent: Some(now - Duration::seconds(30)),
            ..SendFacts::default()
        };
        assert_eq!(judge_send(&later, &limits(), now), Verdict::Send);
    }

    #[test]
    fn a_window_limit_waits_until_its_oldest_code_leaves_the_window() {
        let now = Utc::now();
        let full = WindowCount {
            count: 5,
            oldest: Some(now - Duration::seconds(500)),
        };
        let facts = SendFacts {
            to_number: full,
            ..SendFacts::default()
        };
        let r = refusal(judge_send(&facts, &limits(), now));
        assert_eq!(r.reason, "this number was sent 5 codes in the last 600 s");
        assert_eq!(r.retry_after, 100);
    }

    #[test]
    fn ip_and_device_limits_count_only_when_the_request_names_them() {
        let now = Utc::now();
        let many = WindowCount {
            count: 20,
            oldest: Some(now),
        };
        let by_ip = SendFacts {
            client_ip: Some(many),
            ..SendFacts::default()
        };
        assert!(refusal(judge_send(&by_ip, &limits(), now))
            .reason
            .starts_with("this client_ip was sent 20 codes"));
        let by_device = SendFacts {
            device_id: Some(WindowCount { count: 10, ..many }),
            ..SendFacts::default()
        };
        assert!(refusal(judge_send(&by_device, &limits(), now))
            .reason
            .starts_with("this device_id was sent 10 codes"));
    }

    #[test]
    fn a_paused_range_refuses_until_the_pause_ends() {
        let now = Utc::now();
        let facts = SendFacts {
            paused_until: Some(now + Duration::seconds(90)),
            ..SendFacts::default()
        };
        let r = refusal(judge_send(&facts, &limits(), now));
        assert!(r.reason.contains("pumping") && r.reason.contains("paused"));
        assert_eq!((r.retry_after, r.tripped), (90, false));
        let over = SendFacts {
            paused_until: Some(now),
            ..SendFacts::default()
        };
        assert_eq!(judge_send(&over, &limits(), now), Verdict::Send);
    }

    #[test]
    fn a_burst_to_one_block_trips_the_breaker_on_that_block() {
        let now = Utc::now();
        let facts = SendFacts {
            burst: 10,
            ..SendFacts::default()
        };
        let Verdict::Trip {
            prefix,
            until,
            cause,
            refusal,
        } = judge_send(&facts, &limits(), now)
        else {
            panic!("not tripped");
        };
        assert_eq!(prefix, Paused::BurstBlock);
        assert_eq!(until, now + Duration::seconds(43200));
        assert_eq!(
            cause,
            "10 codes to numbers sharing all but their last four digits in the last 60 s"
        );
        assert_eq!(
            refusal,
            Refusal {
                reason: format!(
                    "codes to this number range are paused: {cause} (suspected SMS pumping)"
                ),
                retry_after: 43200,
                tripped: true,
            }
        );
    }

    #[test]
    fn the_burst_rule_is_off_at_zero() {
        let facts = SendFacts {
            burst: 1000,
            ..SendFacts::default()
        };
        let off = OtpLimits {
            burst_max_sends: 0,
            ..limits()
        };
        assert_eq!(judge_send(&facts, &off, Utc::now()), Verdict::Send);
    }

    #[test]
    fn a_range_whose_codes_stop_being_verified_trips_once_enough_are_judged() {
        let now = Utc::now();
        let facts = SendFacts {
            judged: 20,
            verified: 5,
            ..SendFacts::default()
        };
        let Verdict::Trip { prefix, cause, .. } = judge_send(&facts, &limits(), now) else {
            panic!("not tripped");
        };
        assert_eq!(prefix, Paused::Range);
        assert_eq!(cause, "5 of 20 codes verified (25%) in the last 3600 s");
        let too_few = SendFacts {
            judged: 19,
            verified: 0,
            ..SendFacts::default()
        };
        assert_eq!(judge_send(&too_few, &limits(), now), Verdict::Send);
        let converting = SendFacts {
            judged: 20,
            verified: 6,
            ..SendFacts::default()
        };
        assert_eq!(judge_send(&converting, &limits(), now), Verdict::Send);
    }

    #[test]
    fn an_allow_listed_number_skips_every_limit() {
        let now = Utc::now();
        let facts = SendFacts {
            allow_listed: true,
            paused_until: Some(now + Duration::hours(1)),
            last_sent: Some(now),
            burst: 100,
            judged: 100,
            ..SendFacts::default()
        };
        assert_eq!(judge_send(&facts, &limits(), now), Verdict::Send);
    }

    #[test]
    fn a_pause_outranks_the_cooldown_and_the_cooldown_the_window_limits() {
        let now = Utc::now();
        let facts = SendFacts {
            paused_until: Some(now + Duration::seconds(5)),
            last_sent: Some(now),
            to_number: WindowCount {
                count: 5,
                oldest: Some(now),
            },
            ..SendFacts::default()
        };
        assert!(refusal(judge_send(&facts, &limits(), now))
            .reason
            .contains("paused"));
        let facts = SendFacts {
            paused_until: None,
            ..facts
        };
        assert!(refusal(judge_send(&facts, &limits(), now))
            .reason
            .starts_with("a code was sent"));
    }
}
