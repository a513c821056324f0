//! A batch's rules, as a pure function of (stored batch, input, now):
//! numbering, idempotent resends, limits, and the summary check.
//!
//! Why a state machine apart from storage: the rules are the contract an
//! ERP is written against (reference §3), and both transports obey them,
//! so they live in one place, in the style of the sync engine (`handle_*`
//! in, decision out), and the table tests below pin them without a store.
//!
//! - Messages are numbered 1..n. An identical resend of a number is
//!   accepted and changes nothing; another payload under a number already
//!   taken is an error.
//! - Gaps and repeats are found by the summary: it names the missing and
//!   the extra numbers, leaves the batch open and lets the sender send the
//!   missing messages and a new summary.
//! - A committed batch answers a resend of any of its messages, and of its
//!   summary, as it did the first time.
//! - An expired batch is forgotten: its id may start again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Errors kept on a batch (the latest summary's), at most.
pub(crate) const BATCH_ERRORS_MAX: usize = 20;
/// Message numbers named one by one in a summary error, at most; longer
/// runs are shown as ranges, and the list is cut after this many ranges.
const NUMBER_RANGES_SHOWN_MAX: usize = 20;

/// The limits a batch obeys (from `[ingest]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) messages_per_batch_max: u32,
    pub(crate) rows_per_batch_max: u64,
}

/// A batch's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Open,
    Committed,
    Expired,
}

impl State {
    pub const ALL: [State; 3] = [State::Open, State::Committed, State::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Committed => "committed",
            State::Expired => "expired",
        }
    }

    /// The state named `text`, if any.
    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

/// Tables (collections) one batch may write, at most.
pub(crate) const TABLES_PER_BATCH_MAX: usize = 32;

/// An arriving message, as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Arriving {
    /// SHA-256 of the message's canonical form, first 16 bytes, hex.
    pub(crate) digest: String,
    pub(crate) rows: u32,
    /// The collection its rows go to.
    pub(crate) collection: String,
    pub(crate) base_load: bool,
    /// Chunk records its rows are staged in.
    pub(crate) chunks: u32,
}

/// What a batch remembers of one message (its rows are staged apart).
/// Stored as a JSON array, `[digest, rows, table, base_load, chunks]`:
/// a batch keeps one per message in a single record, so each costs
/// ~60 bytes and `messages_per_batch_max` (at most 500) of them fit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MessageInfo(
    /// The digest (as [`Arriving::digest`]).
    pub(crate) String,
    /// Rows.
    pub(crate) u32,
    /// Index into [`Batch::tables`].
    pub(crate) u16,
    /// A base load.
    pub(crate) bool,
    /// Chunk records.
    pub(crate) u32,
);

impl MessageInfo {
    pub(crate) fn digest(&self) -> &str {
        &self.0
    }
    pub(crate) fn rows(&self) -> u32 {
        self.1
    }
    pub(crate) fn table(&self) -> usize {
        usize::from(self.2)
    }
    pub(crate) fn base_load(&self) -> bool {
        self.3
    }
    pub(crate) fn chunks(&self) -> u32 {
        self.4
    }
}

/// A batch as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Batch {
    pub(crate) erp: String,
    pub(crate) batch_id: i64,
    /// The integration client (user id) that sends it.
    pub(crate) client: String,
    pub(crate) state: State,
    /// The collections its messages write; messages name them by index.
    pub(crate) tables: Vec<String>,
    pub(crate) messages: BTreeMap<u32, MessageInfo>,
    /// The latest summary's errors (empty once committed).
    pub(crate) errors: Vec<String>,
    pub(crate) summaries_refused: u32,
    pub(crate) records_committed: u64,
    pub(crate) created_at_ms: u64,
    pub(crate) updated_at_ms: u64,
    pub(crate) committed_at_ms: Option<u64>,
}

impl Batch {
    pub(crate) fn new(erp: &str, batch_id: i64, client: &str, now_ms: u64) -> Batch {
        Batch {
            erp: erp.to_string(),
            batch_id,
            client: client.to_string(),
            state: State::Open,
            tables: Vec::new(),
            messages: BTreeMap::new(),
            errors: Vec::new(),
            summaries_refused: 0,
            records_committed: 0,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            committed_at_ms: None,
        }
    }

    pub(crate) fn rows_staged(&self) -> u64 {
        self.messages.values().map(|m| u64::from(m.rows())).sum()
    }

    /// Numbers 1..=highest received that are missing.
    pub(crate) fn missing(&self) -> Vec<u32> {
        let highest = self.messages.keys().next_back().copied().unwrap_or(0);
        (1..=highest)
            .filter(|n| !self.messages.contains_key(n))
            .collect()
    }
}

/// What to do with an arriving message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WriteDecision {
    /// Stage it: add `info` under `number` to `batch` (a new batch when
    /// none was open).
    Stage {
        batch: Box<Batch>,
    },
    /// An identical resend: answer success, change nothing.
    AlreadyHave,
    Refuse(String),
}

/// Judge message `number` (with `info`) for `stored` (the batch as
/// stored, if any).
pub(crate) fn on_write(
    stored: Option<&Batch>,
    key: (&str, i64, &str),
    number: i64,
    info: Arriving,
    limits: Limits,
    now_ms: u64,
) -> WriteDecision {
    let (erp, batch_id, client) = key;
    let Ok(number) = u32::try_from(number) else {
        return WriteDecision::Refuse(format!("messageNumber {number} is out of range"));
    };
    if number == 0 || number > limits.messages_per_batch_max {
        return WriteDecision::Refuse(format!(
            "messageNumber {number} must be 1 to {}",
            limits.messages_per_batch_max
        ));
    }
    let open = stored.filter(|b| b.state != State::Expired);
    if let Some(existing) = open.and_then(|b| b.messages.get(&number)) {
        return if existing.digest() == info.digest {
            WriteDecision::AlreadyHave
        } else {
            WriteDecision::Refuse(format!(
                "message {number} of batch {batch_id} was already received with a different payload"
            ))
        };
    }
    let mut batch = match open {
        Some(b) if b.state == State::Committed => {
            return WriteDecision::Refuse(format!(
                "batch {batch_id} is already committed; message {number} was not part of it"
            ))
        }
        Some(b) => b.clone(),
        None => Batch::new(erp, batch_id, client, now_ms),
    };
    let rows = batch.rows_staged() + u64::from(info.rows);
    if rows > limits.rows_per_batch_max {
        return WriteDecision::Refuse(format!(
            "batch {batch_id} would hold {rows} rows, over the limit of {}",
            limits.rows_per_batch_max
        ));
    }
    let table = match batch.tables.iter().position(|t| *t == info.collection) {
        Some(index) => index,
        None if batch.tables.len() < TABLES_PER_BATCH_MAX => {
            batch.tables.push(info.collection.clone());
            batch.tables.len() - 1
        }
        None => {
            return WriteDecision::Refuse(format!(
            "batch {batch_id} already writes {TABLES_PER_BATCH_MAX} tables, the most one batch may"
        ))
        }
    };
    let table = u16::try_from(table).expect("TABLES_PER_BATCH_MAX fits u16");
    batch.messages.insert(
        number,
        MessageInfo(info.digest, info.rows, table, info.base_load, info.chunks),
    );
    batch.updated_at_ms = now_ms;
    WriteDecision::Stage {
        batch: Box::new(batch),
    }
}

/// What the sender claims in its summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) message_count: i64,
    pub(crate) record_count: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SummaryDecision {
    /// Everything matches: commit the staged rows.
    Commit,
    /// Committed before with the same figures: answer success again.
    AlreadyCommitted,
    /// Does not match: the batch stays open; these are the errors.
    Refuse(Vec<String>),
}

/// Judge a summary against the batch as stored.
pub(crate) fn on_summary(
    stored: Option<&Batch>,
    batch_id: i64,
    claim: &Claim,
    limits: Limits,
) -> SummaryDecision {
    if claim.message_count > i64::from(limits.messages_per_batch_max) {
        return SummaryDecision::Refuse(vec![format!(
            "messageCount {} is over the limit of {} messages per batch",
            claim.message_count, limits.messages_per_batch_max
        )]);
    }
    let open = stored.filter(|b| b.state != State::Expired);
    let Some(batch) = open else {
        let missing = match claim.message_count {
            ..=1 => "1".to_string(),
            n => format!("1-{n}"),
        };
        return SummaryDecision::Refuse(vec![format!(
            "batch {batch_id} has no messages here: missing {missing}"
        )]);
    };
    let received = batch.messages.len() as i64;
    let rows = batch.rows_staged() as i64;
    if batch.state == State::Committed {
        return if claim.message_count == received && claim.record_count == rows {
            SummaryDecision::AlreadyCommitted
        } else {
            SummaryDecision::Refuse(vec![format!(
                "batch {batch_id} was committed with {received} messages and {rows} records"
            )])
        };
    }
    let mut errors = Vec::new();
    if claim.message_count < 1 {
        errors.push(format!(
            "messageCount {} must be 1 or more",
            claim.message_count
        ));
        return SummaryDecision::Refuse(errors);
    }
    let count = u32::try_from(claim.message_count).unwrap_or(u32::MAX);
    let missing: Vec<u32> = (1..=count)
        .filter(|n| !batch.messages.contains_key(n))
        .collect();
    let extra: Vec<u32> = batch
        .messages
        .range(count.saturating_add(1)..)
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        errors.push(format!("missing messages: {}", ranges(&missing)));
    }
    if !extra.is_empty() {
        errors.push(format!(
            "extra messages beyond messageCount {count}: {}",
            ranges(&extra)
        ));
    }
    if missing.is_empty() && extra.is_empty() && claim.record_count != rows {
        errors.push(format!(
            "recordCount is {} but the batch's messages hold {rows} records",
            claim.record_count
        ));
    }
    if errors.is_empty() {
        SummaryDecision::Commit
    } else {
        SummaryDecision::Refuse(errors)
    }
}

/// Whether an open batch was abandoned: untouched for `ttl_ms`.
pub(crate) fn expired(batch: &Batch, now_ms: u64, ttl_ms: u64) -> bool {
    batch.state == State::Open && now_ms.saturating_sub(batch.updated_at_ms) >= ttl_ms
}

/// Numbers as ranges: `3, 5-7, 9`, cut after a bounded count.
pub(crate) fn ranges(numbers: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        if parts.len() == NUMBER_RANGES_SHOWN_MAX {
            parts.push("...".into());
            break;
        }
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        messages_per_batch_max: 100,
        rows_per_batch_max: 1000,
    };
    const KEY: (&str, i64, &str) = ("protheus", 42, "erp-client");

    fn info(digest: &str, rows: u32) -> Arriving {
        Arriving {
            digest: digest.into(),
            rows,
            collection: "sa1010".into(),
            base_load: false,
            chunks: 1,
        }
    }

    /// Apply writes `(number, digest)` of 10 rows each; return the batch
    /// and each write's outcome: `S` staged, `=` already had, `!` refused.
    fn feed(writes: &[(i64, &str)]) -> (Option<Batch>, String) {
        let mut batch: Option<Batch> = None;
        let mut outcomes = String::new();
        for (number, digest) in writes {
            match on_write(batch.as_ref(), KEY, *number, info(digest, 10), LIMITS, 7) {
                WriteDecision::Stage { batch: b } => {
                    batch = Some(*b);
                    outcomes.push('S');
                }
                WriteDecision::AlreadyHave => outcomes.push('='),
                WriteDecision::Refuse(_) => outcomes.push('!'),
            }
        }
        (batch, outcomes)
    }

    fn claim(message_count: i64, record_count: i64) -> Claim {
        Claim {
            message_count,
            record_count,
        }
    }

    #[test]
    fn writes_table() {
        let cases: &[(&[(i64, &str)], &str)] = &[
            (&[(1, "a"), (2, "b"), (3, "c")], "SSS"),
            // An identical resend is accepted and changes nothing.
            (&[(1, "a"), (1, "a")], "S="),
            // Another payload under a taken number is refused.
            (&[(1, "a"), (2, "b"), (2, "x"), (3, "c")], "SS!S"),
            // Out of order is fine; the summary judges gaps.
            (&[(3, "c"), (1, "a")], "SS"),
            (&[(0, "a"), (-1, "a"), (101, "a"), (1 << 40, "a")], "!!!!"),
        ];
        for (writes, expected) in cases {
            assert_eq!(feed(writes).1, *expected, "{writes:?}");
        }
    }

    #[test]
    fn row_limit_per_batch() {
        let mut batch = None;
        for number in 1..=100 {
            match on_write(batch.as_ref(), KEY, number, info("d", 10), LIMITS, 1) {
                WriteDecision::Stage { batch: b } => batch = Some(*b),
                other => panic!("{number}: {other:?}"),
            }
        }
        let big = on_write(batch.as_ref(), KEY, 1, info("d", 10), LIMITS, 1);
        assert_eq!(big, WriteDecision::AlreadyHave);
        let limits = Limits {
            rows_per_batch_max: 25,
            ..LIMITS
        };
        let (mut one, _) = feed(&[(1, "a"), (2, "b")]);
        let refused = on_write(one.as_ref(), KEY, 3, info("c", 10), limits, 1);
        assert!(matches!(refused, WriteDecision::Refuse(e) if e.contains("over the limit of 25")));
        one.as_mut().unwrap().state = State::Committed;
        let late = on_write(one.as_ref(), KEY, 3, info("c", 10), LIMITS, 1);
        assert!(matches!(late, WriteDecision::Refuse(e) if e.contains("already committed")));
        assert_eq!(
            on_write(one.as_ref(), KEY, 2, info("b", 10), LIMITS, 1),
            WriteDecision::AlreadyHave
        );
    }

    #[test]
    fn summaries_table() {
        let errors = |writes: &[(i64, &str)], claim: Claim| match on_summary(
            feed(writes).0.as_ref(),
            42,
            &claim,
            LIMITS,
        ) {
            SummaryDecision::Commit => vec!["commit".to_string()],
            SummaryDecision::AlreadyCommitted => vec!["again".to_string()],
            SummaryDecision::Refuse(errors) => errors,
        };
        assert_eq!(
            errors(&[(1, "a"), (2, "b"), (3, "c")], claim(3, 30)),
            ["commit"]
        );
        // A gap: 1, 2, 4 with a claim of 3.
        assert_eq!(
            errors(&[(1, "a"), (2, "b"), (4, "d")], claim(3, 30)),
            [
                "missing messages: 3",
                "extra messages beyond messageCount 3: 4"
            ]
        );
        // A repeat with another payload was refused, so 1, 2, 3 arrived of 4.
        assert_eq!(
            errors(&[(1, "a"), (2, "b"), (2, "x"), (3, "c")], claim(4, 40)),
            ["missing messages: 4"]
        );
        assert_eq!(
            errors(&[(1, "a"), (2, "b")], claim(2, 21)),
            ["recordCount is 21 but the batch's messages hold 20 records"]
        );
        assert_eq!(
            errors(&[], claim(3, 30)),
            ["batch 42 has no messages here: missing 1-3"]
        );
        assert_eq!(
            errors(&[(1, "a")], claim(0, 0)),
            ["messageCount 0 must be 1 or more"]
        );
        assert_eq!(
            errors(&[(1, "a")], claim(101, 10)),
            ["messageCount 101 is over the limit of 100 messages per batch"]
        );
    }

    #[test]
    fn tables_are_kept_once_and_bounded() {
        let mut batch: Option<Batch> = None;
        for number in 1..=(TABLES_PER_BATCH_MAX as i64 + 1) {
            let arriving = Arriving {
                collection: format!("t{}", number.min(TABLES_PER_BATCH_MAX as i64)),
                ..info("d", 1)
            };
            match on_write(batch.as_ref(), KEY, number, arriving, LIMITS, 1) {
                WriteDecision::Stage { batch: b } => batch = Some(*b),
                other => panic!("{number}: {other:?}"),
            }
        }
        let batch = batch.unwrap();
        assert_eq!(
            batch.tables.len(),
            TABLES_PER_BATCH_MAX,
            "a table named twice is kept once"
        );
        assert_eq!(batch.messages[&33].table(), TABLES_PER_BATCH_MAX - 1);
        let one_more = Arriving {
            collection: "another".into(),
            ..info("d", 1)
        };
        let refused = on_write(Some(&batch), KEY, 50, one_more, LIMITS, 1);
        assert!(
            matches!(refused, WriteDecision::Refuse(e) if e.contains("already writes 32 tables"))
        );
    }

    #[test]
    fn committed_batches_answer_resends() {
        let (mut batch, _) = feed(&[(1, "a"), (2, "b")]);
        let b = batch.as_mut().unwrap();
        b.state = State::Committed;
        assert_eq!(
            on_summary(Some(b), 42, &claim(2, 20), LIMITS),
            SummaryDecision::AlreadyCommitted
        );
        assert!(matches!(
            on_summary(Some(b), 42, &claim(3, 30), LIMITS),
            SummaryDecision::Refuse(_)
        ));
    }

    #[test]
    fn expired_batches_start_again() {
        let (mut batch, _) = feed(&[(1, "a"), (2, "b")]);
        let b = batch.as_mut().unwrap();
        assert!(!expired(b, 7 + 999, 1000));
        assert!(expired(b, 7 + 1000, 1000));
        b.state = State::Expired;
        match on_write(Some(b), KEY, 1, info("z", 10), LIMITS, 5000) {
            WriteDecision::Stage { batch } => {
                assert_eq!(batch.messages.len(), 1);
                assert_eq!(batch.state, State::Open);
                assert_eq!(batch.created_at_ms, 5000);
            }
            other => panic!("{other:?}"),
        }
        assert!(!expired(b, u64::MAX, 1), "only open batches expire");
    }

    #[test]
    fn ranges_are_short() {
        assert_eq!(ranges(&[3, 5, 6, 7, 9]), "3, 5-7, 9");
        assert_eq!(ranges(&[]), "");
        let every_other: Vec<u32> = (0..100).map(|n| n * 2).collect();
        assert!(ranges(&every_other).ends_with(", ..."));
    }
}
