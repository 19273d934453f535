//! Single flight: concurrent loads of one key in this process share one run.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::error::Result;

type Slot<T> = Arc<OnceCell<Result<T>>>;

/// In-flight loads by key.
pub(crate) struct Flights<T> {
    inflight: Mutex<HashMap<String, Slot<T>>>,
}

impl<T: Clone> Flights<T> {
    pub fn new() -> Self {
        Flights {
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a load of `key` is running.
    pub fn is_running(&self, key: &str) -> bool {
        self.inflight.lock().expect("flights lock").contains_key(key)
    }

    /// Runs `load` unless a load of `key` is already running, in which case its result is
    /// shared. If the running caller is cancelled, a waiting caller runs its own `load`.
    pub async fn run(&self, key: &str, load: impl Future<Output = Result<T>>) -> Result<T> {
        let slot = self
            .inflight
            .lock()
            .expect("flights lock")
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let result = slot.get_or_init(|| load).await.clone();
        let mut inflight = self.inflight.lock().expect("flights lock");
        if inflight.get(key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
            inflight.remove(key);
        }
        result
    }
}
