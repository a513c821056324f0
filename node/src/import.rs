//! Bulk import of work orders from JSONL (the benchmark fixture format).
//!
//! Contract (the CLI and the benchmark runner both call it):
//! `import_jsonl(store, reader, options, on_ack) -> Result<ImportReport, ImportError>`
//! builds documents on `options.threads` threads, keeps many creates in
//! flight through `Store::submit_create`, and calls `on_ack(line_number, id)`
//! only after that document is durable.
//!
//! Why a pipeline and not a loop of `create_work_order`: building and saving
//! one work order costs ~80 µs of CPU and a flush ~170 µs or more of
//! waiting, so one document at a time spends most of its time waiting. Here
//! one reader thread reads and parses lines in order (~5 µs each) and hands
//! them over in batches, the builder threads (one per core by default) turn
//! them into documents and queue them with the store's group committer,
//! which shares one flush among everything queued, and the calling thread
//! waits for the acknowledgements and reports them. A bounded window keeps
//! memory flat whatever the file's size. Measured with `fieldsync-bench w3`.
//!
//! Failure and re-runs:
//! - A line whose work order already exists is counted as skipped (and
//!   acknowledged: a document with that id is durable), so re-running an
//!   import after a crash completes it without duplicates.
//! - A malformed line (bad JSON, bad UTF-8, over `line_bytes_max`, an invalid
//!   id) stops the reading: every line before it is imported and
//!   acknowledged, no line after it is, and the error names the line.
//! - A line the document builder refuses (a field over its size limit) or a
//!   store failure also stops the import with an error naming the line;
//!   lines after it that were already being built may have been imported
//!   too (and are acknowledged). Nothing acknowledged is ever lost.
//!
//! Gzip input is the caller's choice of reader; [`open_jsonl`] opens a file
//! and decompresses it when it starts with the gzip magic bytes.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use fieldsync_schemas::fixture::FixtureWorkOrder;
use fieldsync_schemas::{Actor, NewWorkOrder};

use crate::store::{validate_doc_id, Pending, Store, WriteError};

/// Longest line accepted by default. A fixture line is ~1.2 KB; a work
/// order with long notes stays far below this.
pub const LINE_BYTES_MAX_DEFAULT: usize = 1024 * 1024;

/// Creates queued but not yet acknowledged, by default. Large enough that
/// the committer always has a full group to flush (a flush covers up to
/// 1,024 writes), small enough to bound memory to a few MB.
pub const IN_FLIGHT_MAX_DEFAULT: usize = 1024;

/// Parsed lines travel to the builders in batches of this many: one channel
/// hand-over (and at most one thread wake-up) per batch instead of per line.
const PARSED_BATCH_LINES: usize = 16;

/// Batches waiting for a builder, per builder thread.
const PARSED_BATCHES_PER_THREAD: usize = 2;

/// How an import runs.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Threads that build documents. Default: the available parallelism.
    pub threads: usize,
    /// Creates queued and not yet acknowledged, at most (plus one per
    /// builder thread being handed over).
    pub in_flight_max: usize,
    /// A longer line is an error, never a large allocation.
    pub line_bytes_max: usize,
    /// Import at most this many (non-blank) lines; `None` reads to the end.
    pub lines_max: Option<u64>,
    /// Who creates the documents (recorded as `created_by`).
    pub who: Actor,
    /// The documents' `created_at` (RFC 3339).
    pub created_at: String,
    /// The Automerge change time, in Unix seconds.
    pub time_s: i64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        let now_ms = crate::clock::now_ms();
        ImportOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            in_flight_max: IN_FLIGHT_MAX_DEFAULT,
            line_bytes_max: LINE_BYTES_MAX_DEFAULT,
            lines_max: None,
            who: Actor::system(),
            created_at: crate::clock::rfc3339_ms(now_ms),
            time_s: (now_ms / 1000) as i64,
        }
    }
}

/// What a finished import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Non-blank lines read (including a malformed last one).
    pub lines: u64,
    /// Work orders created (and durable).
    pub created: u64,
    /// Lines whose work order already existed.
    pub skipped: u64,
}

/// Why an import stopped. Every variant names the line (1-based).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: cannot read the input: {source}")]
    Read {
        line: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line} is longer than {limit_bytes} bytes; is this a JSONL file?")]
    LineTooLong { line: u64, limit_bytes: usize },
    #[error("line {line} is not a valid work order: {reason}")]
    Malformed { line: u64, reason: String },
    #[error("line {line}: work order `{id}` was refused: {source}")]
    Refused {
        line: u64,
        id: String,
        #[source]
        source: Box<WriteError>,
    },
    #[error("line {line}: the store failed: {source}")]
    Store {
        line: u64,
        #[source]
        source: Box<WriteError>,
    },
    #[error("cannot start an import thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl ImportError {
    /// The line the error is about (0 when no line was involved).
    pub fn line(&self) -> u64 {
        match self {
            ImportError::Read { line, .. }
            | ImportError::LineTooLong { line, .. }
            | ImportError::Malformed { line, .. }
            | ImportError::Refused { line, .. }
            | ImportError::Store { line, .. } => *line,
            ImportError::Thread(_) => 0,
        }
    }
}

/// Open a JSONL file, transparently decompressing gzip (detected by its
/// magic bytes, not by the file name).
pub fn open_jsonl(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    let mut file = BufReader::new(File::open(path)?);
    let gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    if gzip {
        let decoder = flate2::bufread::MultiGzDecoder::new(file);
        Ok(Box::new(BufReader::new(decoder)))
    } else {
        Ok(Box::new(file))
    }
}

/// One parsed line on its way to a builder.
struct Parsed {
    line: u64,
    new: NewWorkOrder,
}

/// One queued create on its way to the acknowledger.
struct Queued {
    line: u64,
    id: String,
    pending: Pending,
}

/// State the pipeline's threads share.
struct Shared {
    /// The line of the first error (`u64::MAX` while there is none): the
    /// reader stops, and builders skip the lines from it on, but still
    /// build the lines before it.
    stop_line: AtomicU64,
    /// The error with the lowest line number seen so far.
    error: Mutex<Option<ImportError>>,
}

impl Shared {
    fn fail(&self, error: ImportError) {
        self.stop_line.fetch_min(error.line(), Ordering::AcqRel);
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        let replace = match slot.as_ref() {
            None => true,
            Some(held) => error.line() < held.line(),
        };
        if replace {
            *slot = Some(error);
        }
    }

    fn stopped(&self) -> bool {
        self.stop_line.load(Ordering::Acquire) != u64::MAX
    }

    /// Whether `line` comes at or after the first error.
    fn skips(&self, line: u64) -> bool {
        line >= self.stop_line.load(Ordering::Acquire)
    }
}

/// Import every line of `reader` into `store`; see the module docs for the
/// contract. Blocks until every queued create is acknowledged; call it from
/// a plain thread (or `spawn_blocking`), not from an async task.
pub fn import_jsonl(
    store: &Store,
    reader: impl BufRead + Send,
    options: ImportOptions,
    mut on_ack: impl FnMut(u64, &str),
) -> Result<ImportReport, ImportError> {
    let threads = options.threads.max(1);
    let shared = Shared {
        stop_line: AtomicU64::new(u64::MAX),
        error: Mutex::new(None),
    };
    let (parsed_tx, parsed_rx) = sync_channel::<Vec<Parsed>>(threads * PARSED_BATCHES_PER_THREAD);
    let parsed_rx = Mutex::new(parsed_rx);
    let (queued_tx, queued_rx) = sync_channel::<Queued>(options.in_flight_max.max(1));
    let mut report = ImportReport::default();
    std::thread::scope(|scope| {
        let reading = std::thread::Builder::new()
            .name("fieldsync-import-read".into())
            .spawn_scoped(scope, || read_lines(reader, &options, &shared, parsed_tx));
        let reading = match reading {
            Ok(handle) => Some(handle),
            Err(error) => {
                shared.fail(ImportError::Thread(error));
                None
            }
        };
        for index in 0..threads {
            let queued_tx = queued_tx.clone();
            let (parsed_rx, shared, options) = (&parsed_rx, &shared, &options);
            let spawned = std::thread::Builder::new()
                .name(format!("fieldsync-import-build-{index}"))
                .spawn_scoped(scope, move || {
                    build(store, options, shared, parsed_rx, queued_tx)
                });
            if let Err(error) = spawned {
                shared.fail(ImportError::Thread(error));
            }
        }
        drop(queued_tx);
        // The acknowledger runs here, in the caller's thread. It drains
        // every queued create even after an error: those writes are (or
        // will be) durable, and the caller must hear about them.
        acknowledge(queued_rx, &shared, &mut report, &mut on_ack);
        if let Some(handle) = reading {
            // A panic in the reader is a bug; surface it as one.
            report.lines = handle
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
    });
    match shared.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(error) => Err(error),
        None => Ok(report),
    }
}

/// The reader thread: lines in order, parsed, handed to the builders in
/// batches. Returns how many non-blank lines it read.
fn read_lines(
    mut reader: impl BufRead,
    options: &ImportOptions,
    shared: &Shared,
    parsed_tx: SyncSender<Vec<Parsed>>,
) -> u64 {
    let mut batch = Vec::with_capacity(PARSED_BATCH_LINES);
    let mut buffer = Vec::with_capacity(4096);
    let mut line = 0u64;
    let mut lines_read = 0u64;
    while !shared.stopped() && options.lines_max.is_none_or(|max| lines_read < max) {
        line += 1;
        buffer.clear();
        let limit = options.line_bytes_max as u64 + 1;
        let read = (&mut reader).take(limit).read_until(b'\n', &mut buffer);
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(source) => {
                shared.fail(ImportError::Read { line, source });
                break;
            }
        }
        if buffer.last() == Some(&b'\n') {
            buffer.pop();
        } else if buffer.len() > options.line_bytes_max {
            shared.fail(ImportError::LineTooLong {
                line,
                limit_bytes: options.line_bytes_max,
            });
            break;
        }
        if buffer.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines_read += 1;
        match parse_line(&buffer, &options.created_at) {
            Ok(new) => batch.push(Parsed { line, new }),
            Err(reason) => {
                shared.fail(ImportError::Malformed { line, reason });
                break;
            }
        }
        if batch.len() == PARSED_BATCH_LINES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(PARSED_BATCH_LINES));
            if parsed_tx.send(full).is_err() {
                return lines_read;
            }
        }
    }
    // The lines before a malformed one are imported too.
    if !batch.is_empty() {
        let _ = parsed_tx.send(batch);
    }
    lines_read
}

/// One fixture line as a creation request, or why it is not one.
fn parse_line(bytes: &[u8], created_at: &str) -> Result<NewWorkOrder, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let fixture: FixtureWorkOrder = serde_json::from_str(text).map_err(|e| {
        // serde_json counts lines within the one-line text: say "column".
        let message = e.to_string();
        match message.rfind(" at line ") {
            Some(at) => format!("{} at column {}", &message[..at], e.column()),
            None => message,
        }
    })?;
    validate_doc_id(&fixture.id).map_err(|e| e.to_string())?;
    Ok(fixture.into_new_work_order(created_at))
}

/// A builder thread: documents built and queued with the committer.
fn build(
    store: &Store,
    options: &ImportOptions,
    shared: &Shared,
    parsed_rx: &Mutex<Receiver<Vec<Parsed>>>,
    queued_tx: SyncSender<Queued>,
) {
    loop {
        // The lock is held only to take one batch, not while building.
        let next = parsed_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(batch) = next else {
            return;
        };
        for Parsed { line, new } in batch {
            if shared.skips(line) {
                // Keep draining so the reader never blocks on a full channel.
                continue;
            }
            match store.submit_create(&options.who, &new, options.time_s) {
                Ok((id, pending)) => {
                    if queued_tx.send(Queued { line, id, pending }).is_err() {
                        // The acknowledger is gone (it panicked): stop.
                        shared.stop_line.store(0, Ordering::Release);
                    }
                }
                Err(source) => shared.fail(refusal(line, new.id.unwrap_or_default(), source)),
            }
        }
    }
}

/// Whether a failed write is the line's fault or the store's.
fn refusal(line: u64, id: String, source: WriteError) -> ImportError {
    match source {
        WriteError::InvalidId(_) | WriteError::Op(_) => ImportError::Refused {
            line,
            id,
            source: Box::new(source),
        },
        other => ImportError::Store {
            line,
            source: Box::new(other),
        },
    }
}

/// The acknowledger: waits for each queued create to be durable.
fn acknowledge(
    queued_rx: Receiver<Queued>,
    shared: &Shared,
    report: &mut ImportReport,
    on_ack: &mut impl FnMut(u64, &str),
) {
    for Queued { line, id, pending } in queued_rx {
        match pending.wait() {
            Ok(_) => {
                report.created += 1;
                on_ack(line, &id);
            }
            Err(WriteError::AlreadyExists(_)) => {
                report.skipped += 1;
                on_ack(line, &id);
            }
            Err(source) => shared.fail(refusal(line, id, source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use crate::store::StoreConfig;

    use super::*;

    fn line(index: usize) -> String {
        serde_json::json!({
            "id": format!("imp-{index:04}"),
            "number": format!("WO-2026-{index:06}"),
            "status": "assigned",
            "priority": "high",
            "customer": {"name": "Ana", "address": "Rua A, 1", "phone": "+55 11 1"},
            "description": format!("order {index}"),
            "assignee": "tech-0001",
            "scheduled_for": "2026-05-03T07:35:00Z",
            "notes": [{"author": "operator-0001", "text": "call first", "at": "2026-04-30T12:27:00Z"}],
            "materials": [{"sku": "SKU-1", "qty": 2, "description": "valve"}],
        })
        .to_string()
    }

    fn jsonl(count: usize) -> String {
        (0..count).map(|index| line(index) + "\n").collect()
    }

    fn options() -> ImportOptions {
        ImportOptions {
            threads: 2,
            in_flight_max: 4,
            ..ImportOptions::default()
        }
    }

    fn new_store(dir: &tempfile::TempDir) -> Store {
        Store::init(&dir.path().join("store"), StoreConfig::default()).unwrap()
    }

    #[test]
    fn imports_every_line_and_acknowledges_only_durable_documents() {
        let dir = tempfile::tempdir().unwrap();
        let store = new_store(&dir);
        let mut acked = Vec::new();
        let report = import_jsonl(&store, Cursor::new(jsonl(30)), options(), |line, id| {
            // Acknowledged means visible: its changelog entry is durable.
            let index = store.doc_index(id).unwrap().expect("acked but absent");
            assert!(index.last_seq <= store.last_seq());
            acked.push((line, id.to_string()));
        })
        .unwrap();
        assert_eq!(
            report,
            ImportReport {
                lines: 30,
                created: 30,
                skipped: 0
            }
        );
        acked.sort();
        let expected: Vec<_> = (0..30)
            .map(|index| (index as u64 + 1, format!("imp-{index:04}")))
            .collect();
        assert_eq!(acked, expected);
        let view = store.work_order("imp-0007").unwrap().unwrap();
        assert_eq!(view.description, "order 7");
        assert_eq!(view.notes.len(), 1);
        assert_eq!(view.materials[0].qty, 2.0);
        assert_eq!(view.created_by, Actor::system().user_id);
        assert_eq!(store.last_seq(), 30);
        assert!(store.verify(|_| ()).unwrap().is_empty());
    }

    #[test]
    fn a_rerun_skips_what_exists_and_completes() {
        let dir = tempfile::tempdir().unwrap();
        let store = new_store(&dir);
        // A first run that stopped after 12 lines (as a crash would).
        let first = ImportOptions {
            lines_max: Some(12),
            ..options()
        };
        let report = import_jsonl(&store, Cursor::new(jsonl(30)), first, |_, _| ()).unwrap();
        assert_eq!((report.lines, report.created), (12, 12));
        let mut acks = 0;
        let report =
            import_jsonl(&store, Cursor::new(jsonl(30)), options(), |_, _| acks += 1).unwrap();
        assert_eq!((report.created, report.skipped, acks), (18, 12, 30));
        assert_eq!(store.last_seq(), 30);
    }

    #[test]
    fn a_malformed_line_is_named_and_nothing_after_it_is_imported() {
        let dir = tempfile::tempdir().unwrap();
        let store = new_store(&dir);
        let mut text = String::new();
        for index in 0..20 {
            match index {
                // A blank line still counts as a line of the file.
                4 => text.push('\n'),
                9 => {
                    let truncated = line(index);
                    text.push_str(&truncated[..truncated.len() / 2]);
                    text.push('\n');
                }
                _ => text.push_str(&(line(index) + "\n")),
            }
        }
        let mut acked = Vec::new();
        let error = import_jsonl(&store, Cursor::new(text), options(), |line, _| {
            acked.push(line)
        })
        .unwrap_err();
        assert!(
            matches!(&error, ImportError::Malformed { line: 10, reason } if reason.contains("column")),
            "{error}"
        );
        assert!(error.to_string().starts_with("line 10 "), "{error}");
        acked.sort();
        assert_eq!(acked, vec![1, 2, 3, 4, 6, 7, 8, 9]);
        assert_eq!(store.last_seq(), 8);
        assert!(store.doc_index("imp-0010").unwrap().is_none());
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        type Check = fn(&ImportError) -> bool;
        let limit = line(0).len() + 10;
        let cases: Vec<(Vec<u8>, Check)> = vec![
            (
                format!("{}\n{}\n", line(0), "x".repeat(limit + 1)).into_bytes(),
                |e| matches!(e, ImportError::LineTooLong { line: 2, .. }),
            ),
            (
                // Too long and no newline at all: still refused, not read whole.
                "x".repeat(limit * 50).into_bytes(),
                |e| matches!(e, ImportError::LineTooLong { line: 1, .. }),
            ),
            (
                [line(0).as_bytes(), b"\n\xff\xfe{}\n"].concat(),
                |e| matches!(e, ImportError::Malformed { line: 2, reason } if reason.contains("UTF-8")),
            ),
            (
                line(0).replace("imp-0000", "bad id!").into_bytes(),
                |e| matches!(e, ImportError::Malformed { line: 1, reason } if reason.contains("bad id!")),
            ),
            (
                line(0).replace("\"high\"", "\"extreme\"").into_bytes(),
                |e| matches!(e, ImportError::Malformed { line: 1, .. }),
            ),
            (
                line(0)
                    .replace("\"assignee\"", "\"assignees\"")
                    .into_bytes(),
                |e| matches!(e, ImportError::Malformed { line: 1, reason } if reason.contains("assignees")),
            ),
        ];
        for (input, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let store = new_store(&dir);
            let options = ImportOptions {
                line_bytes_max: limit,
                ..options()
            };
            let error = import_jsonl(&store, Cursor::new(input), options, |_, _| ()).unwrap_err();
            assert!(expected(&error), "unexpected error: {error}");
        }
    }

    #[test]
    fn a_line_the_builder_refuses_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = new_store(&dir);
        let long = line(0).replace("order 0", &"y".repeat(crate::doc::FIELD_TEXT_BYTES_MAX + 1));
        let error = import_jsonl(&store, Cursor::new(long), options(), |_, _| ()).unwrap_err();
        assert!(
            matches!(&error, ImportError::Refused { line: 1, id, .. } if id == "imp-0000"),
            "{error}"
        );
    }

    #[test]
    fn open_jsonl_reads_plain_and_gzip_files() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("orders.jsonl");
        std::fs::write(&plain, jsonl(5)).unwrap();
        // A gzip file is recognised by its bytes, whatever its name.
        let gzip = dir.path().join("orders.data");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(jsonl(7).as_bytes()).unwrap();
        std::fs::write(&gzip, encoder.finish().unwrap()).unwrap();
        for (path, count) in [(plain, 5), (gzip, 7)] {
            let store_dir = tempfile::tempdir().unwrap();
            let store = new_store(&store_dir);
            let reader = open_jsonl(&path).unwrap();
            let report = import_jsonl(&store, reader, options(), |_, _| ()).unwrap();
            assert_eq!(report.created, count);
        }
        assert!(open_jsonl(&dir.path().join("missing.jsonl")).is_err());
    }
}
