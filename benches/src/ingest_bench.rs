//! `ingest`: sustained ERP ingest over gRPC `TableStream`, and the
//! `records` rate of the same machine in the same run.
//!
//! What runs: the gateway as `fieldsync run` starts it (multi-thread
//! tokio, a fresh sled store on disk), one tonic client over one HTTP/2
//! connection sending `--n` rows in messages of `--rows-per-message`, a
//! summary after every `--messages-per-batch` messages. Every `Write` is
//! answered only once its message is staged durably (one flush each), and
//! every summary commits its batch as one write set. The rows are the
//! `records` benchmark's ~300-byte rows, as ten string columns.
//!
//! Why beside `records`: ingest costs protobuf decoding, the batch rules,
//! staging (a durable write per message) and the commit (the rows again,
//! as records). The bar is that this costs no more than storing:
//! ingest ≥ half the rate of plain record writes of 200 on the same
//! machine, measured minutes apart in one process; and ≥ 20,000 rows/s.
//! Printed beside the results, never asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Args;
use fieldsync_gateway::ingest::proto::table_stream_client::TableStreamClient;
use fieldsync_gateway::ingest::proto::{
    BatchSummary, RowColumn, Schema, SchemaColumn, SchemaPrimaryKey, Table, TableRow,
};
use fieldsync_gateway::{AppState, GatewayConfig, TokenKey};
use fieldsync_node::secret;
use fieldsync_node::store::{Store, StoreConfig, User};
use fieldsync_schemas::{Role, Scope};

/// The integration client that sends.
const CLIENT: &str = "bench-erp";
/// Worker threads of the gateway's runtime (the machine has 2 cores).
const SERVER_THREADS: usize = 2;
/// The targets, printed, never asserted.
const TARGET_ROWS_PER_S: f64 = 20_000.0;
const TARGET_RATIO_TO_RECORDS: f64 = 0.5;
/// Records per write set in the `records` comparison (its default).
const RECORDS_BATCH: usize = 200;

#[derive(Args, Clone)]
pub(crate) struct IngestArgs {
    /// Rows to send.
    #[arg(long, default_value_t = 200_000)]
    n: u64,
    /// Rows per message.
    #[arg(long, default_value_t = 200)]
    rows_per_message: u64,
    /// Messages per batch (one summary each).
    #[arg(long, default_value_t = 10)]
    messages_per_batch: u64,
    /// Where the fresh stores are made (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The `records` benchmark's row `index` as ten string columns.
fn table_row(index: u64) -> TableRow {
    let value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&crate::records_bench::row(index)).expect("a JSON object");
    TableRow {
        columns: value
            .into_iter()
            .map(|(name, value)| RowColumn {
                name,
                value: match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                },
            })
            .collect(),
    }
}

fn schema() -> Schema {
    let names = crate::records_bench::row(0);
    let value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&names).expect("a JSON object");
    Schema {
        flexible: false,
        export_data: true,
        columns: value
            .keys()
            .map(|name| SchemaColumn {
                name: name.clone(),
                r#type: "varchar".into(),
            })
            .collect(),
        primary_key: Some(SchemaPrimaryKey {
            name: "PK".into(),
            columns: vec!["sku".into()],
        }),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

pub(crate) fn ingest(args: &IngestArgs) -> anyhow::Result<()> {
    ensure!(
        args.n > 0 && args.rows_per_message > 0 && args.messages_per_batch > 0,
        "--n, --rows-per-message and --messages-per-batch must be at least 1"
    );
    let temp = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("cannot make a temporary directory")?;
    let store = Store::init(&temp.path().join("ingest"), StoreConfig::default())?;
    let secret_text = "bench-erp-secret";
    store.put_user(&User {
        id: CLIENT.into(),
        role: Role::Integration,
        scopes: vec![Scope::BatchesWrite],
        secret_hash: Some(secret::hash(secret_text)?),
        enroll_code_hash: None,
        enroll_code_expires_at_ms: None,
        node_ids: Vec::new(),
        revoked: false,
        created_at: "2026-12-06T00:00:00Z".into(),
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVER_THREADS)
        .enable_all()
        .build()?;
    let state = AppState::new(
        store.clone(),
        TokenKey::generate(),
        GatewayConfig::default(),
    )?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(fieldsync_gateway::run(listener, state, async move {
        let _ = stopped.await;
    }));
    let run = runtime.block_on(send_all(&url, secret_text, args))?;
    let _ = shutdown.send(());
    runtime.block_on(serving)??;
    let problems = store.verify(|_| {})?;
    ensure!(problems.is_empty(), "verify found problems: {problems:?}");
    let records = store.records("materials", None, 1)?;
    ensure!(!records.is_empty(), "no rows landed");
    ensure!(
        store.last_seq() == args.n,
        "the feed holds {} of {} rows",
        store.last_seq(),
        args.n
    );
    store.close();
    let plain = Store::init(&temp.path().join("records"), StoreConfig::default())?;
    let records_s = crate::records_bench::write_records(&plain, args.n, RECORDS_BATCH, 1)?;
    plain.close();
    report(args, &run, args.n as f64 / records_s)
}

/// What the client saw.
struct Sent {
    elapsed_s: f64,
    writes: Vec<Duration>,
    summaries: Vec<Duration>,
}

async fn send_all(url: &str, secret_text: &str, args: &IngestArgs) -> anyhow::Result<Sent> {
    fieldsync_gateway::install_crypto_provider();
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{url}/oauth/token"))
        .basic_auth(CLIENT, Some(secret_text))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    let body: serde_json::Value = response.json().await?;
    let token = body["access_token"].as_str().context("no access_token")?;
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut client = TableStreamClient::connect(url.to_string()).await?;
    let schema = schema();
    let mut sent = Sent {
        elapsed_s: 0.0,
        writes: Vec::new(),
        summaries: Vec::new(),
    };
    let started = Instant::now();
    let (mut row, mut batch_id) = (0u64, 1_780_000_000i64);
    while row < args.n {
        let mut batch_rows = 0i64;
        let mut number = 0i32;
        while number < args.messages_per_batch as i32 && row < args.n {
            number += 1;
            let end = (row + args.rows_per_message).min(args.n);
            let rows: Vec<TableRow> = (row..end).map(table_row).collect();
            batch_rows += rows.len() as i64;
            row = end;
            let mut request = tonic::Request::new(Table {
                table_name: "MATERIALS".into(),
                erp: "bench".into(),
                record_count: rows.len() as i32,
                rows,
                schema: Some(schema.clone()),
                batch_id,
                message_number: number,
                is_base_load: false,
            });
            request.metadata_mut().insert("authorization", auth.clone());
            let at = Instant::now();
            let answer = client.write(request).await?.into_inner();
            sent.writes.push(at.elapsed());
            ensure!(answer.success, "write refused: {:?}", answer.errors);
        }
        let mut request = tonic::Request::new(BatchSummary {
            erp: "bench".into(),
            batch_id,
            message_count: number,
            record_count: batch_rows,
            timestamp_start: None,
            timestamp_end: None,
        });
        request.metadata_mut().insert("authorization", auth.clone());
        let at = Instant::now();
        let answer = client.summary(request).await?.into_inner();
        sent.summaries.push(at.elapsed());
        ensure!(answer.success, "summary refused: {:?}", answer.errors);
        batch_id += 1;
    }
    sent.elapsed_s = started.elapsed().as_secs_f64();
    Ok(sent)
}

fn report(args: &IngestArgs, sent: &Sent, records_per_s: f64) -> anyhow::Result<()> {
    let mut writes = sent.writes.clone();
    writes.sort();
    let mut summaries = sent.summaries.clone();
    summaries.sort();
    let rows_per_s = args.n as f64 / sent.elapsed_s;
    println!(
        "workload=ingest n={} rows_per_message={} messages_per_batch={} rows_per_s={rows_per_s:.0} \
         write_p50_ms={:.2} write_p90_ms={:.2} write_p99_ms={:.2} write_mean_ms={:.2} summary_p50_ms={:.2} summary_p99_ms={:.2} \
         records_per_s={records_per_s:.0} ratio_to_records={:.2} rss_mb={:.1}",
        args.n,
        args.rows_per_message,
        args.messages_per_batch,
        percentile(&writes, 0.50),
        percentile(&writes, 0.90),
        percentile(&writes, 0.99),
        writes.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / writes.len().max(1) as f64,
        percentile(&summaries, 0.50),
        percentile(&summaries, 0.99),
        rows_per_s / records_per_s,
        crate::peak_rss_mb()?,
    );
    println!(
        "targets: rows_per_s >= {TARGET_ROWS_PER_S:.0}, ratio_to_records >= {TARGET_RATIO_TO_RECORDS} \
         (records of {RECORDS_BATCH} per write set, one at a time, same run)"
    );
    Ok(())
}
