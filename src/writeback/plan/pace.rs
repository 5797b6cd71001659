//! When a round writes: a part batch goes at once while the connection is quiet and waits to
//! fill only as its flow of changes rises, and no call goes beyond the connection's budget of
//! API calls a minute. Pure: the caller passes the time, so tests drive a clock of their own.

use std::{collections::VecDeque, time::Duration};

use chrono::{DateTime, Utc};

/// The window calls are counted in against the budget.
const BUDGET_WINDOW: chrono::Duration = chrono::Duration::seconds(60);
/// How long a part batch waits after the last call when the last minute spent the whole
/// budget (less in proportion to the part spent, and never longer than the hold).
const SPACING_AT_BUDGET: Duration = Duration::from_secs(30);
/// The window the flow of changes is measured over: long enough to see a steady flow, short
/// enough that the tail of a burst is not held for a flow that has stopped.
const FLOW_WINDOW: chrono::Duration = chrono::Duration::seconds(10);

/// What bounds one connection's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Records one call takes (200 on Salesforce, 100 on kintone).
    pub batch: usize,
    /// API requests one call costs against the CRM's allowance (kintone reads the records'
    /// revisions before it writes them: 2).
    pub cost: u32,
    /// API requests a minute at most.
    pub per_minute: u32,
    /// The longest a change waits for others to fill its batch (`fill_wait_ms`).
    pub hold: Duration,
    /// How long a change waits before a part batch goes, so that a burst shows its flow before
    /// the first call and a lone change is still written within seconds.
    pub gather: Duration,
}

/// Whether a batch is written now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write it.
    Send,
    /// Not in this round.
    Hold(Held),
}

/// Why a batch waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// The last minute's calls spent the budget.
    Budget,
    /// Its oldest change is younger than `gather`.
    Gathering,
    /// Changes flow fast enough to fill it before its oldest one has waited `hold`.
    Filling,
    /// The connection called recently, in proportion to how much of its budget it used.
    Spacing,
}

/// One connection's recent calls and writes, and the decisions they lead to.
#[derive(Debug)]
pub struct Pace {
    limits: Limits,
    /// When each call of the last minute went, and what it cost.
    calls: VecDeque<(DateTime<Utc>, u32)>,
    /// When the changes written in the flow window happened.
    written: VecDeque<DateTime<Utc>>,
}

impl Pace {
    /// A connection with no calls yet.
    pub fn new(limits: Limits) -> Self {
        let limits = Limits {
            batch: limits.batch.max(1),
            cost: limits.cost.max(1),
            // A budget below one call's cost would hold the queue for ever.
            per_minute: limits.per_minute.max(limits.cost.max(1)),
            ..limits
        };
        Self {
            limits,
            calls: VecDeque::new(),
            written: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// API requests spent in the minute before `now`.
    pub fn used(&self, now: DateTime<Utc>) -> u32 {
        self.calls
            .iter()
            .filter(|(at, _)| now - *at < BUDGET_WINDOW)
            .map(|(_, cost)| cost)
            .sum()
    }

    /// Whether to write a batch whose changes happened at `batch` (one time per record, the
    /// oldest change each carries) at `now`. `backlog` says more entries wait than a round
    /// reads: then only the budget holds a batch, since the oldest would otherwise hide the rest.
    pub fn decide(&self, now: DateTime<Utc>, batch: &[DateTime<Utc>], backlog: bool) -> Decision {
        let used = self.used(now);
        if used + self.limits.cost > self.limits.per_minute {
            return Decision::Hold(Held::Budget);
        }
        if backlog || batch.len() >= self.limits.batch {
            return Decision::Send;
        }
        let Some(oldest) = batch.iter().min() else {
            return Decision::Send;
        };
        let waited = (now - *oldest).to_std().unwrap_or_default();
        if waited >= self.limits.hold {
            return Decision::Send;
        }
        if waited < self.limits.gather {
            return Decision::Hold(Held::Gathering);
        }
        let still = (self.limits.hold - waited).as_secs_f64();
        if batch.len() as f64 + self.flow(now, batch) * still >= self.limits.batch as f64 {
            return Decision::Hold(Held::Filling);
        }
        let spacing = self
            .limits
            .hold
            .min(SPACING_AT_BUDGET)
            .mul_f64(f64::from(used) / f64::from(self.limits.per_minute));
        let last = self.calls.back().map(|(at, _)| *at);
        if last.is_some_and(|last| (now - last).to_std().unwrap_or_default() < spacing) {
            return Decision::Hold(Held::Spacing);
        }
        Decision::Send
    }

    /// Changes a second, from those written and those of `batch` that happened in the flow
    /// window: the changes after the first over the time since it (at least `gather`), so a
    /// lone change shows no flow and a few together show little.
    fn flow(&self, now: DateTime<Utc>, batch: &[DateTime<Utc>]) -> f64 {
        let recent: Vec<DateTime<Utc>> = self
            .written
            .iter()
            .chain(batch)
            .copied()
            .filter(|at| now - *at < FLOW_WINDOW)
            .collect();
        let Some(first) = recent.iter().min() else {
            return 0.0;
        };
        let span = (now - *first)
            .to_std()
            .unwrap_or_default()
            .max(self.limits.gather)
            .max(Duration::from_millis(1));
        (recent.len() - 1) as f64 / span.as_secs_f64()
    }

    /// A call went at `now` with the records whose changes happened at `written`.
    pub fn called(&mut self, now: DateTime<Utc>, written: &[DateTime<Utc>]) {
        while self
            .calls
            .front()
            .is_some_and(|(at, _)| now - *at >= BUDGET_WINDOW)
        {
            self.calls.pop_front();
        }
        self.calls.push_back((now, self.limits.cost));
        self.written.retain(|at| now - *at < FLOW_WINDOW);
        self.written
            .extend(written.iter().filter(|at| now - **at < FLOW_WINDOW));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALESFORCE: Limits = Limits {
        batch: 200,
        cost: 1,
        per_minute: 30,
        hold: Duration::from_secs(30),
        gather: Duration::from_secs(1),
    };

    /// kintone with a budget raised for 1,000 messages a minute.
    const KINTONE: Limits = Limits {
        batch: 100,
        cost: 1,
        per_minute: 30,
        ..SALESFORCE
    };

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + millis).unwrap()
    }

    /// A worker's rounds, every `round` ms, over changes happening at `changes` (ms): what each
    /// call carried and when, the way `Worker::round` asks the pace.
    struct Run {
        pace: Pace,
        now: i64,
        pending: Vec<i64>,
        calls: Vec<(i64, usize)>,
        /// Milliseconds from each change to the call that wrote it.
        latencies: Vec<i64>,
    }

    impl Run {
        fn new(limits: Limits) -> Self {
            Run {
                pace: Pace::new(limits),
                now: 0,
                pending: Vec::new(),
                calls: Vec::new(),
                latencies: Vec::new(),
            }
        }

        fn until(&mut self, changes: &mut impl Iterator<Item = i64>, end: i64, round: i64) {
            let mut changes = changes.peekable();
            while self.now <= end {
                while let Some(change) = changes.next_if(|c| *c <= self.now) {
                    self.pending.push(change);
                }
                self.round(self.now);
                self.now += round;
            }
        }

        fn round(&mut self, now: i64) {
            let batch = self.pace.limits().batch;
            loop {
                let take = self.pending.len().min(batch);
                if take == 0 {
                    return;
                }
                let times: Vec<_> = self.pending[..take].iter().map(|t| at(*t)).collect();
                if self.pace.decide(at(now), &times, false) != Decision::Send {
                    return;
                }
                self.pace.called(at(now), &times);
                self.calls.push((now, take));
                self.latencies
                    .extend(self.pending.drain(..take).map(|t| now - t));
            }
        }

        fn sizes(&self) -> Vec<usize> {
            self.calls.iter().map(|(_, n)| *n).collect()
        }
    }

    fn steady(per_minute: i64, from: i64, minutes: i64) -> impl Iterator<Item = i64> {
        let gap = 60_000 / per_minute;
        (0..per_minute * minutes).map(move |i| from + i * gap)
    }

    #[test]
    fn a_lone_change_is_written_within_seconds_of_it() {
        for limits in [SALESFORCE, KINTONE] {
            let mut run = Run::new(limits);
            run.until(&mut [0].into_iter(), 5_000, 500);
            assert_eq!(run.sizes(), [1]);
            assert!(run.latencies[0] <= 1_500, "{:?}", run.latencies);
        }
    }

    #[test]
    fn changes_ten_seconds_apart_are_each_written_at_once() {
        let mut run = Run::new(SALESFORCE);
        run.until(&mut (0..10).map(|i| i * 10_000), 120_000, 500);
        assert_eq!(run.sizes(), [1; 10]);
        assert!(
            run.latencies.iter().all(|l| *l <= 1_500),
            "{:?}",
            run.latencies
        );
    }

    #[test]
    fn a_thousand_changes_over_a_minute_take_five_salesforce_calls_of_200() {
        let mut run = Run::new(SALESFORCE);
        run.until(&mut steady(1_000, 0, 1), 60_000, 500);
        assert_eq!(run.sizes(), [200; 5], "calls at {:?}", run.calls);
    }

    #[test]
    fn a_thousand_changes_over_a_minute_take_ten_kintone_calls_of_100() {
        let mut run = Run::new(KINTONE);
        run.until(&mut steady(1_000, 0, 1), 60_000, 500);
        assert_eq!(run.sizes(), [100; 10], "calls at {:?}", run.calls);
    }

    #[test]
    fn a_flow_beyond_the_budget_is_written_in_full_calls_no_faster_than_it_allows() {
        // 6 requests a minute (kintone's default) for a sink whose write costs two.
        let mut run = Run::new(Limits {
            per_minute: 6,
            cost: 2,
            ..KINTONE
        });
        run.until(&mut steady(1_000, 0, 3), 180_000, 500);
        assert!(run.sizes().iter().all(|n| *n == 100), "{:?}", run.sizes());
        for minute in 0..3 {
            let calls = run
                .calls
                .iter()
                .filter(|(t, _)| t / 60_000 == minute)
                .count();
            assert!(calls <= 3, "{calls} calls in minute {minute}");
        }
    }

    #[test]
    fn a_steady_flow_stays_at_five_calls_a_thousand_for_as_long_as_it_lasts() {
        let mut run = Run::new(SALESFORCE);
        run.until(&mut steady(1_000, 0, 10), 600_000, 500);
        assert_eq!(run.sizes(), [200; 50]);
        assert!(run.latencies.iter().all(|l| *l <= 13_000));
    }

    #[test]
    fn a_burst_after_a_quiet_hour_goes_out_in_full_batches() {
        let mut run = Run::new(SALESFORCE);
        run.until(&mut [0].into_iter(), 3_600_000, 10_000);
        let quiet = run.calls.len();
        let start = run.now;
        run.until(&mut (0..1_100).map(|_| start), start + 60_000, 500);
        let burst = &run.sizes()[quiet..];
        assert_eq!(burst[..5], [200; 5], "{burst:?}");
        assert_eq!(
            burst[5..],
            [100],
            "the rest follows once the flow has stopped"
        );
        let (rest_at, _) = run.calls.last().unwrap();
        assert!(
            rest_at - start <= 12_000,
            "the rest waited {} ms",
            rest_at - start
        );
    }

    #[test]
    fn a_spent_budget_holds_further_calls_until_it_refills() {
        let mut run = Run::new(Limits {
            per_minute: 3,
            ..SALESFORCE
        });
        run.until(&mut (0..1_000).map(|_| 0), 59_500, 500);
        assert_eq!(
            run.sizes(),
            [200; 3],
            "three calls, then the minute is spent"
        );
        run.until(&mut std::iter::empty(), 60_000, 500);
        assert_eq!(run.sizes(), [200; 5], "the first minute's calls came back");
        assert_eq!((run.calls[3].0, run.calls[4].0), (60_000, 60_000));
    }

    #[test]
    fn a_flow_too_slow_to_fill_batches_costs_a_few_calls_a_minute() {
        // Part batches wait after a call in proportion to the budget the last minute used, so
        // such a flow settles near √(60 s × 30 a minute / 30 s) ≈ 8 calls a minute.
        for per_minute in [15, 30, 120, 400] {
            let mut run = Run::new(SALESFORCE);
            run.until(&mut steady(per_minute, 0, 10), 630_000, 500);
            let calls = run.calls.len() as f64 / 10.0;
            assert!(calls <= 9.0, "{per_minute}/min: {calls} calls a minute");
            let longest = *run.latencies.iter().max().unwrap();
            assert!(
                longest <= 10_000,
                "{per_minute}/min: a change waited {longest} ms"
            );
            assert!(run.pending.is_empty());
        }
    }

    #[test]
    fn no_change_waits_longer_than_the_hold() {
        // 450 a minute would fill 200 in 27 s: batches wait to fill, never past the hold.
        let mut run = Run::new(SALESFORCE);
        run.until(&mut steady(450, 0, 5), 340_000, 500);
        let longest = *run.latencies.iter().max().unwrap();
        assert!(longest <= 30_500, "a change waited {longest} ms");
        assert!(run.pending.is_empty());
    }

    #[test]
    fn a_backlog_is_written_without_holding_but_within_the_budget() {
        let pace = Pace::new(Limits {
            per_minute: 1,
            ..SALESFORCE
        });
        assert_eq!(pace.decide(at(0), &[at(0)], true), Decision::Send);
        let mut pace = pace;
        pace.called(at(0), &[at(0)]);
        assert_eq!(
            pace.decide(at(1_000), &[at(0)], true),
            Decision::Hold(Held::Budget)
        );
    }

    #[test]
    fn a_budget_below_one_calls_cost_still_lets_calls_through() {
        let pace = Pace::new(Limits {
            cost: 2,
            per_minute: 1,
            ..KINTONE
        });
        assert_eq!(pace.limits().per_minute, 2);
        assert_eq!(pace.decide(at(5_000), &[at(0)], false), Decision::Send);
    }
}
