//! Whether the store can serve: reachable, with every migration applied.

use async_trait::async_trait;

use super::StoreResult;

/// The store's own state, for readiness probes.
#[async_trait]
pub trait HealthStore: Send + Sync + 'static {
    /// Store reachable and every migration applied.
    async fn ready(&self) -> StoreResult<()>;
}
