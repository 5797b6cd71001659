//! Clicks are counted off the redirect's path: the handler queues them and one task commits what
//! is queued in batches, so a burst of clicks costs a commit per batch, not per click.

use std::{sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::store::{NewClick, Store};

/// Clicks waiting for their commit; a redirect waits for room beyond this.
pub const CLICK_QUEUE: usize = 10_000;
/// Most clicks in one commit.
const BATCH: usize = 1_000;

/// Hands clicks to the task that stores them.
#[derive(Clone, Debug)]
pub struct ClickRecorder {
    queue: mpsc::Sender<NewClick>,
}

impl ClickRecorder {
    /// Start the task that stores clicks into `store`; at `stop` it stores what is queued and
    /// ends.
    pub fn start(store: Arc<dyn Store>, stop: CancellationToken) -> (Self, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(CLICK_QUEUE);
        (Self { queue }, tokio::spawn(run(store, rx, stop)))
    }

    /// Queue a click for its commit.
    pub async fn record(&self, click: NewClick) {
        if self.queue.send(click).await.is_err() {
            tracing::warn!("a click came after shutdown began; not counted");
        }
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<NewClick>, stop: CancellationToken) {
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            _ = stop.cancelled() => {
                while let Ok(click) = rx.try_recv() {
                    batch.push(click);
                }
                if !batch.is_empty() {
                    store_batch(store.as_ref(), batch).await;
                }
                return;
            }
            received = rx.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    return;
                }
                store_batch(store.as_ref(), batch).await;
            }
        }
    }
}

/// Commit a batch, retrying while the store cannot answer for a few seconds; clicks that still
/// cannot be stored are counted as lost.
async fn store_batch(store: &dyn Store, batch: Vec<NewClick>) {
    let n = batch.len() as u64;
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(5)
        .build();
    loop {
        match store.record_clicks(batch.clone()).await {
            Ok(()) => {
                metrics::counter!("tsunagi_link_clicks_total").increment(n);
                return;
            }
            Err(e) => match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => {
                    metrics::counter!("tsunagi_link_clicks_lost_total").increment(n);
                    tracing::error!(error = %e, clicks = n, "clicks could not be stored");
                    return;
                }
            },
        }
    }
}
