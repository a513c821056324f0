//! The changes feed for a gateway caller: the node's page reader
//! (`fieldsync_node::feed`) with the caller as the viewer. The reader and
//! the visibility rule live in the node, so background tasks read the same
//! feed without an HTTP caller.

use fieldsync_node::clock;
use fieldsync_node::feed::{self, FeedAccess, FeedQuery};
use fieldsync_node::store::Store;

pub use fieldsync_node::feed::FeedPage;

use crate::auth::Caller;
use crate::error::ApiError;

/// Read the page after `since` as `caller` sees it: at most `limit`
/// documents and records, scanning at most `scan_max` entries.
pub fn read_page(
    store: &Store,
    caller: &Caller,
    since: u64,
    limit: usize,
    collection: Option<&str>,
    scan_max: usize,
) -> Result<FeedPage, ApiError> {
    let access = FeedAccess {
        viewer: caller.viewer(),
        configured: &caller.read_grants,
        now_ms: clock::now_ms(),
        grace_ms: caller.grace_ms,
    };
    let query = FeedQuery {
        since,
        limit,
        collection,
        scan_max,
    };
    feed::read_page(store, &access, &query).map_err(ApiError::internal)
}
