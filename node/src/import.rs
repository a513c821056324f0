//! Bulk import of work orders from JSONL (the benchmark fixture format).
//!
//! Contract (the CLI and the benchmark runner both call it):
//! `import_jsonl(store, reader, options, on_ack) -> Result<ImportReport, ImportError>`
//! builds documents on `options.threads` threads, keeps many creates in
//! flight through `Store::submit_create`, and calls `on_ack(line_number, id)`
//! only after that document is durable.
