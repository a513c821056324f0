//! What every field-app handler shares: the store, the technician the
//! laptop was enrolled for, the key, the listener's address and the sync
//! state source.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use fieldsync_node::store::Store;
use fieldsync_schemas::Role;

use super::session::FieldKey;
use super::sync_bar::SyncSource;
use crate::auth::Caller;

/// What the binary knows that the app needs.
#[derive(Clone, Debug)]
pub struct FieldOptions {
    /// The enrolled technician (`enrollment.json`): the only viewer and
    /// actor of this app.
    pub user: String,
    /// `[sync] grace_ms`: a reassigned work order stays visible this long.
    pub grace_ms: u64,
    /// `[field_app] allow_remote`.
    pub allow_remote: bool,
}

/// The app's shared state. Cheap to clone.
#[derive(Clone)]
pub struct FieldState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    key: FieldKey,
    options: FieldOptions,
    /// The listener's address: the `Host` and `Origin` requests must name.
    address: SocketAddr,
    sync: Arc<dyn SyncSource>,
    /// Held while the technician's local state is read and written back,
    /// so two tabs do not lose each other's timers.
    local_lock: Arc<Mutex<()>>,
}

impl FieldState {
    pub fn new(
        store: Store,
        key: FieldKey,
        options: FieldOptions,
        address: SocketAddr,
        sync: Arc<dyn SyncSource>,
    ) -> FieldState {
        FieldState {
            inner: Arc::new(Inner {
                store,
                key,
                options,
                address,
                sync,
                local_lock: Arc::default(),
            }),
        }
    }

    pub(super) fn key(&self) -> &FieldKey {
        &self.inner.key
    }

    pub(super) fn address(&self) -> SocketAddr {
        self.inner.address
    }

    pub(super) fn allow_remote(&self) -> bool {
        self.inner.options.allow_remote
    }

    pub(super) fn user(&self) -> &str {
        &self.inner.options.user
    }

    pub(super) fn local_lock(&self) -> Arc<Mutex<()>> {
        self.inner.local_lock.clone()
    }

    pub(super) fn sync(&self) -> &dyn SyncSource {
        self.inner.sync.as_ref()
    }

    /// The technician as the visibility rule and the typed operations see
    /// them: no scopes (technicians need none), the node's grace period.
    pub(super) fn caller(&self) -> Caller {
        Caller {
            user_id: self.inner.options.user.clone(),
            role: Role::Technician,
            scopes: Vec::new(),
            grace_ms: self.inner.options.grace_ms,
            read_grants: Arc::default(),
        }
    }

    /// Run blocking store work (reads that load documents, writes that
    /// wait for the durable flush) off the async workers.
    pub(super) async fn blocking<T: Send + 'static, E: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, BlockingError<E>> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|_| BlockingError::Panicked)?
            .map_err(BlockingError::Failed)
    }
}

/// A blocking task's failure: its own error, or it did not finish.
#[derive(Debug)]
pub(super) enum BlockingError<E> {
    Failed(E),
    Panicked,
}
