//! The SMPP provider's counters and gauges (`tsunagi_smpp_*`).

/// A submit ended as `result`: accepted, refused, throttled (retried) or lost (the connection
/// dropped before its answer; retried).
pub(super) fn submit(result: &'static str) {
    metrics::counter!("tsunagi_smpp_submits_total", "result" => result).increment(1);
}

/// A delivery receipt arrived saying `state` (delivered, undelivered, failed, interim, unreadable).
pub(super) fn receipt(state: &'static str) {
    metrics::counter!("tsunagi_smpp_receipts_total", "state" => state).increment(1);
}

/// A mobile-originated message was stored (`stored`), a part of one kept for the rest
/// (`part_kept`), or neither (`invalid_sender`, `store_error`).
pub(super) fn inbound(outcome: &'static str) {
    metrics::counter!("tsunagi_smpp_inbound_total", "outcome" => outcome).increment(1);
}

/// The SMSC slowed a bind down (`ESME_RTHROTTLED` or `ESME_RMSGQFUL`).
pub(super) fn throttled() {
    metrics::counter!("tsunagi_smpp_throttles_total").increment(1);
}

/// A bind came up (`+1`) or went down (`-1`).
pub(super) fn binds_up(change: f64) {
    metrics::gauge!("tsunagi_smpp_binds_up").increment(change);
}

/// A receiver bind (transmitter + receiver mode) came up (`+1`) or went down (`-1`).
pub(super) fn receivers_up(change: f64) {
    metrics::gauge!("tsunagi_smpp_receivers_up").increment(change);
}

/// A bind attempt failed: `refused` by the SMSC, `unreachable`, or no `tls` session.
pub(super) fn bind_failed(reason: &'static str) {
    metrics::counter!("tsunagi_smpp_bind_failures_total", "reason" => reason).increment(1);
}

/// Submits sent and not yet answered changed by `change`.
pub(super) fn window(change: f64) {
    metrics::gauge!("tsunagi_smpp_window_in_use").increment(change);
}

/// A delivery (receipt or mobile-originated message) arrived by `pdu`: `deliver_sm` or
/// `data_sm`.
pub(super) fn delivery(pdu: &'static str) {
    metrics::counter!("tsunagi_smpp_deliveries_total", "pdu" => pdu).increment(1);
}

/// An `alert_notification` arrived (taken, never answered: SMPP 3.4 defines no response).
pub(super) fn alert_notification() {
    metrics::counter!("tsunagi_smpp_alert_notifications_total").increment(1);
}
