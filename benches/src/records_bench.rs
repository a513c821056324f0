//! `records`: how fast plain versioned records are written durably, beside
//! what sled itself does with the same batches and flushes, in one run.
//!
//! Why beside raw sled: a record costs our code a few µs (validation, a
//! compare-and-set read, a changelog entry, postcard), so the disk should
//! be the limit. Raw sled batches of the same size, each flushed, measured
//! in the same process minutes apart, give that limit on this machine; the
//! ratio is what to watch (target: records ≥ half the raw rate). Then one
//! reader pages the changes feed over every record, through the node's
//! feed reader (no HTTP), as a webhook dispatcher would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context};
use clap::Args;
use fieldsync_node::access::{ReadGrants, Viewer};
use fieldsync_node::feed::{self, FeedAccess, FeedQuery};
use fieldsync_node::store::{Expect, RecordWrite, Store, StoreConfig, WriteSet};
use serde_json::json;

#[derive(Args, Clone)]
pub(crate) struct RecordsArgs {
    /// Records to write.
    #[arg(long, default_value_t = 100_000)]
    n: u64,
    /// Records per write set (and per raw sled batch).
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Write sets in flight at once (1: one after the other, as raw sled).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Feed page size.
    #[arg(long, default_value_t = 1_000)]
    page_size: usize,
    /// Where the fresh stores are made (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// A ~300-byte JSON row, as an ERP's materials table would send.
pub(crate) fn row(index: u64) -> Vec<u8> {
    let value = json!({
        "sku": format!("M-{index:08}"),
        "description": format!("Copper pipe fitting, elbow 90°, {} mm, lead-free brass body", 10 + index % 90),
        "unit": "pcs",
        "price": (index % 9_973) as f64 / 100.0,
        "currency": "EUR",
        "warehouse": format!("WH-{:02}", index % 17),
        "stock": index % 500,
        "updated_at": "2026-12-02T10:00:00.000Z",
        "supplier": format!("SUP-{:05}", index % 311),
        "category": "plumbing/fittings/brass",
        "ean": format!("40{:011}", index),
    });
    serde_json::to_vec(&value).expect("JSON of a plain value")
}

pub(crate) fn records(args: &RecordsArgs) -> anyhow::Result<()> {
    ensure!(
        args.n > 0 && args.batch > 0 && args.in_flight > 0,
        "--n, --batch and --in-flight must be at least 1"
    );
    let temp = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("cannot make a temporary directory")?;
    let value_bytes = row(0).len();
    let raw_s = raw_sled(&temp.path().join("raw"), args)?;
    let store = Store::init(&temp.path().join("store"), StoreConfig::default())?;
    let flushes_before = store.flush_count();
    let records_s = write_records(&store, args.n, args.batch, args.in_flight)?;
    let flushes = store.flush_count() - flushes_before;
    let (feed_s, entries) = read_feed(&store, args)?;
    ensure!(
        entries == args.n,
        "the feed showed {entries} of {} records",
        args.n
    );
    let problems = store.verify(|_| {})?;
    ensure!(problems.is_empty(), "verify found problems: {problems:?}");
    let n = args.n as f64;
    println!(
        "workload=records n={} batch={} in_flight={} value_bytes={value_bytes} \
         records_per_s={:.0} raw_sled_rows_per_s={:.0} ratio={:.2} flushes={flushes} \
         feed_entries_per_s={:.0} rss_mb={:.1}",
        args.n,
        args.batch,
        args.in_flight,
        n / records_s,
        n / raw_s,
        raw_s / records_s,
        n / feed_s,
        crate::peak_rss_mb()?,
    );
    Ok(())
}

/// Raw sled: the same keys and values in batches of `batch`, each flushed
/// before the next (what one acknowledged write set costs at least).
fn raw_sled(path: &std::path::Path, args: &RecordsArgs) -> anyhow::Result<f64> {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(StoreConfig::default().sled_cache_bytes)
        .flush_every_ms(None)
        .open()?;
    let tree = db.open_tree("data")?;
    let started = Instant::now();
    let mut index = 0u64;
    while index < args.n {
        let mut batch = sled::Batch::default();
        let end = (index + args.batch as u64).min(args.n);
        for i in index..end {
            batch.insert(format!("rmaterials\0M-{i:08}").as_bytes(), row(i));
        }
        tree.apply_batch(batch)?;
        db.flush()?;
        index = end;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `n` records through the store's committer in write sets of `batch`,
/// `in_flight` at once; the seconds it took.
pub(crate) fn write_records(
    store: &Store,
    n: u64,
    batch: usize,
    in_flight: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    let mut index = 0u64;
    while index < n {
        let end = (index + batch as u64).min(n);
        let records = (index..end)
            .map(|i| RecordWrite {
                collection: "materials".into(),
                key: format!("M-{i:08}"),
                value: Some(row(i)),
                expect: Expect::Any,
                replicated_version: None,
            })
            .collect();
        pending.push_back(store.submit(WriteSet {
            records,
            ..WriteSet::default()
        })?);
        if pending.len() >= in_flight {
            pending.pop_front().expect("not empty").wait()?;
        }
        index = end;
    }
    for write in pending {
        write.wait()?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Page the feed from the start as the node itself sees it.
fn read_feed(store: &Store, args: &RecordsArgs) -> anyhow::Result<(f64, u64)> {
    let configured = BTreeMap::<String, ReadGrants>::new();
    let access = FeedAccess {
        viewer: Viewer::Office,
        configured: &configured,
        now_ms: 0,
        grace_ms: 0,
    };
    let started = Instant::now();
    let (mut since, mut entries) = (0u64, 0u64);
    loop {
        let query = FeedQuery {
            since,
            limit: args.page_size,
            collection: None,
            scan_max: args.page_size,
        };
        let page = feed::read_page(store, &access, &query)?;
        entries += page.entries.len() as u64;
        if page.last_seq == since {
            break;
        }
        since = page.last_seq;
    }
    Ok((started.elapsed().as_secs_f64(), entries))
}
