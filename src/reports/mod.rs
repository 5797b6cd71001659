//! Usage and delivery reports: the rules that fold the store's facts into days and groups. The
//! store counts; what is billable, which day a time falls on and how rates are taken is decided
//! here.

mod delivery;
mod latency;
mod range;
mod usage;

pub use self::{
    delivery::{delivery_report, DeliveryGroup, DeliveryReport, GroupBy},
    latency::LatencyHistogram,
    range::{DayRange, RangeError, MAX_REPORT_DAYS, MAX_USAGE_DAYS},
    usage::{usage_report, DayUsage, StatusUsage, Usage, BILLED_STATES},
};
