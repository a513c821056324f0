//! A bounded cache of loaded documents.
//!
//! Why bounded: resident memory per loaded Automerge document is 50-80x its
//! stored size (automerge.md), so a node holding 10,000 work orders must not
//! keep them all loaded. Least recently used documents are dropped; a writer
//! still holding an evicted document's `Arc` finishes its write safely.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::doc::WorkOrderDoc;

/// A loaded document and how many chunks it occupies on disk.
#[derive(Debug)]
pub struct CachedDoc {
    pub doc: WorkOrderDoc,
    pub chunks: u32,
}

pub(crate) struct DocCache {
    docs: Mutex<LruCache<String, Arc<Mutex<CachedDoc>>>>,
}

impl DocCache {
    pub(crate) fn new(docs_max: usize) -> DocCache {
        let capacity = NonZeroUsize::new(docs_max.max(1)).unwrap_or(NonZeroUsize::MIN);
        DocCache {
            docs: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Mutex<CachedDoc>>> {
        self.docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Insert unless another thread loaded it first; return the one kept, so
    /// two loaders of one document end up locking the same copy.
    pub(crate) fn insert(&self, id: &str, cached: CachedDoc) -> Arc<Mutex<CachedDoc>> {
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = docs.get(id) {
            return existing.clone();
        }
        let handle = Arc::new(Mutex::new(cached));
        docs.put(id.to_string(), handle.clone());
        handle
    }

    pub(crate) fn evict(&self, id: &str) {
        self.docs.lock().unwrap_or_else(|p| p.into_inner()).pop(id);
    }
}
