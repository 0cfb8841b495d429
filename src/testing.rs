//! Ports for tests and single-purpose setups: a [`Fleet`] that serves every
//! placement from the same services, and one that sends lifecycle calls
//! elsewhere (moto 5.2 does not implement CompleteLifecycleAction, so the
//! integration tests record them on a local endpoint).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::core::placement::Placement;
use crate::ports::{Fleet, InstanceInventory, Lifecycle, PlacementError, Regional};

/// Every placement gets the same inventory and lifecycle; the placements
/// asked for are recorded.
pub struct FixedFleet {
    inventory: Arc<dyn InstanceInventory>,
    lifecycle: Arc<dyn Lifecycle>,
    asked: Mutex<Vec<Placement>>,
}

impl FixedFleet {
    pub fn new(inventory: Arc<dyn InstanceInventory>, lifecycle: Arc<dyn Lifecycle>) -> Self {
        Self {
            inventory,
            lifecycle,
            asked: Mutex::new(Vec::new()),
        }
    }

    /// The placements asked for so far, in order.
    pub fn asked(&self) -> Vec<Placement> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Fleet for FixedFleet {
    async fn regional(&self, placement: &Placement) -> Result<Regional, PlacementError> {
        if let Ok(mut a) = self.asked.lock() {
            a.push(placement.clone());
        }
        Ok(Regional {
            placement: placement.clone(),
            inventory: self.inventory.clone(),
            lifecycle: self.lifecycle.clone(),
        })
    }
}

/// `inner`'s services, with lifecycle calls sent to `lifecycle`.
pub struct LifecycleOverride {
    pub inner: Arc<dyn Fleet>,
    pub lifecycle: Arc<dyn Lifecycle>,
}

#[async_trait]
impl Fleet for LifecycleOverride {
    async fn regional(&self, placement: &Placement) -> Result<Regional, PlacementError> {
        let mut regional = self.inner.regional(placement).await?;
        regional.lifecycle = self.lifecycle.clone();
        Ok(regional)
    }
}
