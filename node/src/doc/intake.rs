//! Automerge bytes from a peer, checked before Automerge parses them.
//!
//! Why: Automerge inflates the deflate-compressed parts of what it loads
//! (compressed change chunks, deflated columns of document
//! chunks) with `read_to_end` and no cap. Deflate reaches ~1000:1, so one
//! 2 MiB sync message from an enrolled laptop made the central allocate
//! gigabytes (hardening issue, finding 1). Our own nodes never need that
//! much: whole documents travel as `save_nocompress` bytes and changes as
//! Automerge's raw change chunks.
//!
//! What: [`check`] walks the chunk headers (magic, checksum, type,
//! length: the Automerge binary format), and for every compressed part
//! inflates it into a counting sink, stopping at a byte budget shared by
//! the whole input. Nothing is kept, so checking costs at most the budget
//! in CPU and no memory; Automerge then inflates the same bytes again,
//! within the budget. It validates nothing else: Automerge does, after.
//!
//! The same walk counts operations: a run-length encoded column can claim
//! 10^8 operations in a dozen bytes, and Automerge would build and apply
//! every one. The rows of each op column block's action column (every op
//! has one action) are summed against an operation budget.
//!
//! A chunk the walker cannot read ends the checked prefix, which is what
//! callers hand to Automerge: `load_incremental` ignores an unparsable
//! tail anyway, and nothing past it is ever inflated.

use std::io::Read;

/// Bytes all compressed parts of one input may inflate to, in total. A
/// work order is ~1 KB; a sync message carries at most a frame (4 MiB).
pub const INFLATED_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// Operations one input may hold, in total. A work order holds a few
/// hundred; a 64 KiB report typed in full is ~64k.
pub const OPS_MAX: u64 = 1_000_000;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const HASH_BYTES: usize = 32;
const COLUMN_DEFLATE_BIT: u64 = 0b1000;
/// The action column of an op column block: id 4, type integer (RLE).
const ACTION_COLUMN_SPEC: u64 = (4 << 4) | 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    #[error("compressed Automerge data inflates past the limit of {limit_bytes} bytes")]
    TooLarge { limit_bytes: u64 },
    #[error("Automerge data holds more than the limit of {limit_ops} operations")]
    TooManyOps { limit_ops: u64 },
    #[error("Automerge data holds a counter increment, which no work order uses")]
    Increment,
}

/// What one input may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub inflated_bytes_max: u64,
    pub ops_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            inflated_bytes_max: INFLATED_BYTES_MAX,
            ops_max: OPS_MAX,
        }
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Length of the prefix made of readable chunks: the bytes to load.
    pub prefix_bytes: usize,
    /// Bytes the compressed parts of that prefix inflate to.
    pub inflated_bytes: u64,
    /// Operations the prefix holds.
    pub ops: u64,
}

impl Checked {
    pub fn is_whole(&self, input: &[u8]) -> bool {
        self.prefix_bytes == input.len()
    }
}

/// Walk the concatenated chunks in `bytes`, inflating every compressed
/// part and counting operations within `limits`, for all chunks together.
pub fn check(bytes: &[u8], limits: Limits) -> Result<Checked, IntakeError> {
    let mut budget = Budget {
        left_bytes: limits.inflated_bytes_max,
        limit_bytes: limits.inflated_bytes_max,
        ops: 0,
        ops_max: limits.ops_max,
    };
    let mut reader = Reader::new(bytes);
    // Each chunk consumes at least its 9-byte header: bounded by the input.
    while !reader.is_empty() {
        let start = reader.position();
        match chunk(&mut reader, &mut budget)? {
            Some(()) => {}
            None => {
                return Ok(Checked {
                    prefix_bytes: start,
                    inflated_bytes: budget.used(),
                    ops: budget.ops,
                })
            }
        }
    }
    Ok(Checked {
        prefix_bytes: bytes.len(),
        inflated_bytes: budget.used(),
        ops: budget.ops,
    })
}

/// One chunk. `Ok(None)`: unreadable (the caller stops before it).
fn chunk(reader: &mut Reader<'_>, budget: &mut Budget) -> Result<Option<()>, IntakeError> {
    let Some(magic) = reader.take(4) else {
        return Ok(None);
    };
    if magic != MAGIC || reader.take(4).is_none() {
        return Ok(None);
    }
    let (Some(kind), Some(length)) = (reader.byte(), reader.uleb()) else {
        return Ok(None);
    };
    let Some(body) = usize::try_from(length).ok().and_then(|n| reader.take(n)) else {
        return Ok(None);
    };
    match kind {
        // A document chunk: actors, heads, then change and op columns.
        0 => document_chunk(body, budget),
        // A change chunk.
        1 => change_chunk(body, budget),
        // A compressed change chunk: the body is a change chunk's, deflated.
        2 => match budget.inflate_into(body)? {
            Some(plain) => change_chunk(&plain, budget),
            None => Ok(None),
        },
        // A bundle: our nodes never send one (sync sends change chunks, or
        // a document chunk in V2 messages), and Automerge 0.12 panics on
        // some malformed ones (fuzzing, `fuzz/artifacts/sync_frame/F2-...`: an unwrap in
        // its column decoder), so a bundle ends what Automerge is given.
        3 => Ok(None),
        _ => Ok(None),
    }
}

/// A document chunk's body: actors, heads, then the change and op column
/// blocks (both metadata blocks first, then both data blocks).
fn document_chunk(body: &[u8], budget: &mut Budget) -> Result<Option<()>, IntakeError> {
    let mut reader = Reader::new(body);
    if reader.actors().and_then(|()| reader.hashes()).is_none() {
        return Ok(None);
    }
    let (Some(change_columns), Some(op_columns)) = (reader.column_meta(), reader.column_meta())
    else {
        return Ok(None);
    };
    let (Some(change_data), Some(op_data)) = (
        reader.take_columns(&change_columns),
        reader.take_columns(&op_columns),
    ) else {
        return Ok(None);
    };
    if inflate_columns(&change_columns, change_data, budget, false)?.is_none() {
        return Ok(None);
    }
    inflate_columns(&op_columns, op_data, budget, true)
}

/// A change chunk's body: dependencies, actor, seq, start op, time,
/// message, other actors, then one op column block.
fn change_chunk(body: &[u8], budget: &mut Budget) -> Result<Option<()>, IntakeError> {
    let mut reader = Reader::new(body);
    let header = reader.hashes().and_then(|()| {
        let actor = reader.length()?;
        reader.take(actor)?;
        reader.uleb()?; // seq
        reader.uleb()?; // start op
        reader.sleb()?; // time
        let message = reader.length()?;
        reader.take(message)?;
        reader.actors()
    });
    let Some(ops) = header.and_then(|()| reader.column_meta()) else {
        return Ok(None);
    };
    let Some(op_data) = reader.take_columns(&ops) else {
        return Ok(None);
    };
    inflate_columns(&ops, op_data, budget, true)
}

/// Column specifications and lengths of one metadata block.
type Columns = Vec<(u64, usize)>;

/// Inflate the deflated columns of one block within the budget; in an op
/// block (`ops`), count the action column's rows against the budget.
fn inflate_columns(
    columns: &Columns,
    data: &[u8],
    budget: &mut Budget,
    ops: bool,
) -> Result<Option<()>, IntakeError> {
    let mut offset = 0usize;
    for &(spec, length) in columns {
        let column = &data[offset..offset + length];
        offset += length;
        let deflated = spec & COLUMN_DEFLATE_BIT != 0;
        if !ops || spec & !COLUMN_DEFLATE_BIT != ACTION_COLUMN_SPEC {
            if deflated && budget.inflate(column)?.is_none() {
                return Ok(None);
            }
            continue;
        }
        let actions = if deflated {
            budget
                .inflate_into(column)?
                .and_then(|plain| rle_actions(&plain))
        } else {
            rle_actions(column)
        };
        let Some(actions) = actions else {
            return Ok(None);
        };
        if actions.increments {
            return Err(IntakeError::Increment);
        }
        budget.count_ops(actions.rows)?;
    }
    Ok(Some(()))
}

/// Automerge's action code for a counter increment.
const ACTION_INCREMENT: u64 = 5;

/// What an action column holds.
struct Actions {
    rows: u64,
    /// Any counter increment. Work orders use no counters, and Automerge
    /// adds increments to a counter unchecked: past `i64::MAX` it wraps in
    /// release builds and panics with debug assertions (fuzzing finding
    /// F3). So a peer's increment is refused, never applied.
    increments: bool,
}

/// The rows of an RLE-encoded action column: runs of one repeated value
/// (positive count), literal runs (negative count, that many values
/// follow) and null runs (zero, then the count). `None`: not a valid
/// column. Every value read consumes input, so the loop is bounded by the
/// column's length however large the counts it claims.
fn rle_actions(column: &[u8]) -> Option<Actions> {
    let mut reader = Reader::new(column);
    let mut actions = Actions {
        rows: 0,
        increments: false,
    };
    while !reader.is_empty() {
        let count = reader.sleb()?;
        let run = match count {
            1.. => {
                actions.increments |= reader.uleb()? == ACTION_INCREMENT;
                count.unsigned_abs()
            }
            ..=-1 => {
                let literal = count.unsigned_abs();
                for _ in 0..literal {
                    actions.increments |= reader.uleb()? == ACTION_INCREMENT;
                }
                literal
            }
            0 => reader.uleb()?,
        };
        actions.rows = actions.rows.saturating_add(run);
    }
    Some(actions)
}

struct Budget {
    left_bytes: u64,
    limit_bytes: u64,
    ops: u64,
    ops_max: u64,
}

impl Budget {
    fn used(&self) -> u64 {
        self.limit_bytes - self.left_bytes
    }

    /// Inflate `compressed` into a counting sink. `Ok(None)`: not deflate.
    fn inflate(&mut self, compressed: &[u8]) -> Result<Option<()>, IntakeError> {
        self.inflate_to(compressed, &mut std::io::sink())
    }

    /// Inflate `compressed` into memory (at most the budget).
    fn inflate_into(&mut self, compressed: &[u8]) -> Result<Option<Vec<u8>>, IntakeError> {
        let mut plain = Vec::new();
        Ok(self.inflate_to(compressed, &mut plain)?.map(|()| plain))
    }

    fn inflate_to(
        &mut self,
        compressed: &[u8],
        out: &mut impl std::io::Write,
    ) -> Result<Option<()>, IntakeError> {
        let decoder = flate2::bufread::DeflateDecoder::new(compressed);
        // One byte past the budget tells "over" from "exactly at".
        let mut capped = decoder.take(self.left_bytes.saturating_add(1));
        let Ok(inflated) = std::io::copy(&mut capped, out) else {
            return Ok(None);
        };
        if inflated > self.left_bytes {
            return Err(IntakeError::TooLarge {
                limit_bytes: self.limit_bytes,
            });
        }
        self.left_bytes -= inflated;
        Ok(Some(()))
    }

    fn count_ops(&mut self, rows: u64) -> Result<(), IntakeError> {
        self.ops = self.ops.saturating_add(rows);
        if self.ops > self.ops_max {
            return Err(IntakeError::TooManyOps {
                limit_ops: self.ops_max,
            });
        }
        Ok(())
    }
}

/// A cursor over bytes; every read is checked, none panics.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    fn position(&self) -> usize {
        self.position
    }

    fn is_empty(&self) -> bool {
        self.position >= self.bytes.len()
    }

    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let end = self.position.checked_add(count)?;
        let taken = self.bytes.get(self.position..end)?;
        self.position = end;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// Unsigned LEB128, at most 10 bytes (a u64).
    fn uleb(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for index in 0..10 {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if index == 9 && bits > 1 {
                return None;
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// Signed LEB128, at most 10 bytes (an i64).
    fn sleb(&mut self) -> Option<i64> {
        let mut value = 0i64;
        for index in 0..10 {
            let byte = self.byte()?;
            value |= i64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                if index < 9 && byte & 0x40 != 0 {
                    value |= -1i64 << (7 * (index + 1));
                }
                return Some(value);
            }
        }
        None
    }

    fn length(&mut self) -> Option<usize> {
        usize::try_from(self.uleb()?).ok()
    }

    /// A count-prefixed list of length-prefixed actor ids. Each item reads
    /// at least one byte, so the loop is bounded by the input.
    fn actors(&mut self) -> Option<()> {
        let count = self.uleb()?;
        for _ in 0..count {
            let length = self.length()?;
            self.take(length)?;
        }
        Some(())
    }

    /// A count-prefixed list of change hashes.
    fn hashes(&mut self) -> Option<()> {
        let count = self.length()?;
        self.take(count.checked_mul(HASH_BYTES)?)?;
        Some(())
    }

    /// A column metadata block: a count, then (specification, length)
    /// pairs. Each pair reads at least two bytes.
    fn column_meta(&mut self) -> Option<Columns> {
        let count = self.length()?;
        if count > self.bytes.len().saturating_sub(self.position) / 2 {
            return None;
        }
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let spec = self.uleb()?;
            let length = self.length()?;
            columns.push((spec, length));
        }
        Some(columns)
    }

    /// The data of `columns`, all of it present.
    fn take_columns(&mut self, columns: &Columns) -> Option<&'a [u8]> {
        let total = columns
            .iter()
            .try_fold(0usize, |sum, (_, length)| sum.checked_add(*length))?;
        self.take(total)
    }
}

/// Probes a peer's Bloom filter may ask for, at most (Automerge uses 7;
/// each probe of each of our changes is a computation, and the count is
/// also the size of a vector Automerge allocates per change).
pub const BLOOM_PROBES_MAX: u64 = 64;

/// Why a peer's sync message would panic, overload or mislead Automerge,
/// if it would. Its Bloom filters: a filter with entries but no bits makes
/// its probes divide by zero (fuzzing found it, F1: one frame from any
/// peer), and a filter may claim any number of probes. Its `need`: a hash
/// named twice makes Automerge 0.12's `get_changes_by_hashes` build, beside
/// the real change, one the document never had, sent to the peer (and a
/// panic under debug assertions; fuzzing found it, F4). Automerge's own
/// `need` never repeats a hash, so only a broken or hostile peer sends it.
pub fn sync_message_problem(message: &automerge::sync::Message) -> Option<&'static str> {
    // Nearly every message needs 0 or 1 changes: no set for those.
    let repeated = message.need.len() > 1 && {
        let distinct: std::collections::HashSet<_> = message.need.iter().collect();
        distinct.len() != message.need.len()
    };
    if repeated {
        return Some("a `need` naming a change twice");
    }
    message.have.iter().find_map(|have| {
        let bytes = have.bloom.to_bytes();
        if bytes.is_empty() {
            return None;
        }
        let mut reader = Reader::new(&bytes);
        let header = (reader.uleb(), reader.uleb(), reader.uleb());
        match header {
            (Some(_), Some(_), Some(_)) if reader.is_empty() => Some("a Bloom filter with no bits"),
            (Some(_), Some(_), Some(probes)) if !(1..=BLOOM_PROBES_MAX).contains(&probes) => {
                Some("a Bloom filter with too many (or no) probes")
            }
            (Some(_), Some(_), Some(_)) => None,
            _ => Some("an unreadable Bloom filter"),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, Automerge, ReadDoc, ROOT};

    use super::*;

    /// Fuzzing found it (`fuzz/artifacts/sync_frame/F1-bloom-rem-by-zero`):
    /// a filter with entries but no bits made Automerge divide by zero.
    #[test]
    fn bloom_filters_that_would_panic_automerge_are_refused() {
        use automerge::sync::{BloomFilter, Have, Message, MessageVersion};
        let message = |bloom: &[u8]| Message {
            heads: vec![],
            need: vec![],
            have: vec![Have {
                last_sync: vec![],
                bloom: BloomFilter::try_from(bloom).unwrap(),
            }],
            changes: Vec::<Vec<u8>>::new().into(),
            flags: None,
            version: MessageVersion::V1,
        };
        let cases: [(&[u8], bool); 5] = [
            (&[], true),
            (&[1, 10, 7, 0, 0], true),
            (&[1, 0, 7], false),
            (&[1, 10, 0, 0, 0], false),
            (&[1, 10, 0x80, 0x01, 0, 0], false),
        ];
        for (bloom, fine) in cases {
            assert_eq!(
                sync_message_problem(&message(bloom)).is_none(),
                fine,
                "{bloom:?}"
            );
        }
    }

    /// Fuzzing found it (F4, `fuzz/artifacts/sync_frame/F4-*`): a `need`
    /// naming one hash twice made Automerge answer with a change the
    /// document never had.
    #[test]
    fn a_need_naming_a_change_twice_is_refused() {
        use automerge::sync::{Message, MessageVersion};
        use automerge::ChangeHash;
        let message = |need: Vec<ChangeHash>| Message {
            heads: vec![],
            need,
            have: vec![],
            changes: Vec::<Vec<u8>>::new().into(),
            flags: None,
            version: MessageVersion::V1,
        };
        let (a, b) = (ChangeHash([1; 32]), ChangeHash([2; 32]));
        assert!(sync_message_problem(&message(vec![])).is_none());
        assert!(sync_message_problem(&message(vec![a, b])).is_none());
        assert!(sync_message_problem(&message(vec![a, b, a])).is_some());
        assert!(sync_message_problem(&message(vec![b, b])).is_some());
    }

    fn bytes_max(inflated_bytes_max: u64) -> Limits {
        Limits {
            inflated_bytes_max,
            ..Limits::default()
        }
    }

    fn deflate(plain: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(plain).unwrap();
        encoder.finish().unwrap()
    }

    fn uleb(mut value: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn chunk(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[0, 0, 0, 0, kind]);
        uleb(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    /// A document with a text large enough that `save()` deflates columns
    /// and a change large enough that Automerge compresses it.
    fn sample() -> AutoCommit {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "kind", "work_order").unwrap();
        doc.put(ROOT, "text", "field note ".repeat(400)).unwrap();
        doc
    }

    #[test]
    fn what_our_nodes_send_passes_whole() {
        let mut doc = sample();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("save_nocompress", doc.save_nocompress()),
            ("save (deflated columns)", doc.save()),
            ("changes", doc.document().save_after(&[])),
            (
                "compressed change",
                doc.document()
                    .get_changes(&[])
                    .into_iter()
                    .map(|c| c.clone().bytes().into_owned())
                    .next()
                    .unwrap(),
            ),
            ("empty", Vec::new()),
        ];
        for (name, bytes) in cases {
            let checked = check(&bytes, Limits::default()).unwrap();
            assert!(checked.is_whole(&bytes), "{name}: {checked:?}");
        }
        // The deflated cases really were inflated and counted.
        let saved = doc.save();
        assert!(check(&saved, Limits::default()).unwrap().inflated_bytes > 1000);
        assert!(Automerge::load(&saved).is_ok());
    }

    #[test]
    fn a_compressed_change_that_inflates_past_the_budget_is_refused() {
        let bomb = chunk(2, &deflate(&vec![0u8; 4 * 1024 * 1024]));
        assert!(bomb.len() < 16 * 1024, "{} bytes", bomb.len());
        assert_eq!(
            check(&bomb, bytes_max(1024 * 1024)),
            Err(IntakeError::TooLarge {
                limit_bytes: 1024 * 1024
            })
        );
        // The budget is shared by every chunk of the input.
        let half = chunk(2, &deflate(&vec![0u8; 600 * 1024]));
        let two = [half.clone(), half].concat();
        assert!(check(&two, bytes_max(1024 * 1024)).is_err());
        assert!(check(&two, bytes_max(2 * 1024 * 1024)).is_ok());
    }

    #[test]
    fn a_deflated_document_column_past_the_budget_is_refused() {
        // A document chunk: no actors, no heads, no change columns, one op
        // column flagged deflate (id 1, type 0, deflate bit) of zeros.
        let column = deflate(&vec![0u8; 2 * 1024 * 1024]);
        let mut body = vec![0, 0, 0, 1];
        uleb(0b1_0000 | COLUMN_DEFLATE_BIT, &mut body);
        uleb(column.len() as u64, &mut body);
        body.extend_from_slice(&column);
        let document = chunk(0, &body);
        assert!(check(&document, bytes_max(1024 * 1024)).is_err());
        assert!(check(&document, bytes_max(4 * 1024 * 1024))
            .unwrap()
            .is_whole(&document));
        // The same as a bundle (no deps, no actors, no change columns): a
        // bundle is never inflated, it ends the prefix.
        let mut bundle_body = vec![0, 0, 0, 1];
        uleb(0b1_0000 | COLUMN_DEFLATE_BIT, &mut bundle_body);
        uleb(column.len() as u64, &mut bundle_body);
        bundle_body.extend_from_slice(&column);
        let checked = check(&chunk(3, &bundle_body), bytes_max(1024 * 1024)).unwrap();
        assert_eq!(checked.prefix_bytes, 0);
    }

    #[test]
    fn unreadable_input_ends_the_prefix_and_never_panics() {
        let good = sample().document().save_after(&[]);
        let table: Vec<(&str, Vec<u8>, usize)> = vec![
            ("bad magic", vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0),
            ("truncated header", MAGIC[..3].to_vec(), 0),
            (
                "length past the end",
                {
                    let mut c = chunk(1, b"abc");
                    c.truncate(c.len() - 1);
                    c
                },
                0,
            ),
            ("unknown type", chunk(9, b"x"), 0),
            ("not deflate", chunk(2, &[0xff; 8]), 0),
            (
                "huge column count",
                chunk(0, &[0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]),
                0,
            ),
            (
                "huge actor count",
                chunk(0, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
                0,
            ),
            ("overlong leb", chunk(0, &[0xff; 12]), 0),
            (
                "good then garbage",
                [good.clone(), vec![7; 20]].concat(),
                good.len(),
            ),
        ];
        for (name, bytes, prefix) in table {
            let checked = check(&bytes, Limits::default()).unwrap();
            assert_eq!(checked.prefix_bytes, prefix, "{name}");
        }
    }

    #[test]
    fn the_checked_prefix_loads_the_readable_changes() {
        let mut doc = sample();
        let changes = doc.document().save_after(&[]);
        let noisy = [changes.clone(), vec![0x85, 0x6f, 0x4a, 0x83, 0, 0]].concat();
        let checked = check(&noisy, Limits::default()).unwrap();
        assert_eq!(checked.prefix_bytes, changes.len());
        let mut prefix = Automerge::new();
        prefix
            .load_incremental(&noisy[..checked.prefix_bytes])
            .unwrap();
        assert_eq!(prefix.get_heads(), doc.get_heads());
        assert_eq!(
            prefix.get(ROOT, "kind").unwrap().unwrap().0.as_str(),
            Some("work_order")
        );
    }

    fn sleb(mut value: i64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
            out.push(if done { byte } else { byte | 0x80 });
            if done {
                return;
            }
        }
    }

    #[test]
    fn operations_are_counted_as_automerge_counts_them() {
        let mut doc = sample();
        let text = doc
            .put_object(ROOT, "list", automerge::ObjType::List)
            .unwrap();
        for index in 0..300 {
            doc.insert(&text, index, automerge::ScalarValue::Null)
                .unwrap();
        }
        doc.commit();
        let ops = automerge::ReadDoc::stats(doc.document()).num_ops;
        for (name, bytes) in [
            ("changes", doc.document().save_after(&[])),
            ("document", doc.save_nocompress()),
            ("deflated document", doc.save()),
        ] {
            assert_eq!(check(&bytes, Limits::default()).unwrap().ops, ops, "{name}");
        }
        let limits = Limits {
            ops_max: ops - 1,
            ..Limits::default()
        };
        assert_eq!(
            check(&doc.save(), limits),
            Err(IntakeError::TooManyOps { limit_ops: ops - 1 })
        );
    }

    #[test]
    fn a_change_claiming_a_hundred_million_operations_in_a_few_bytes_is_refused() {
        // A change chunk: no deps, a one-byte actor, seq 1, start op 1,
        // time 0, no message, no other actors, then one op column: the
        // action column as one RLE run of 10^8 copies of action 1.
        let mut column = Vec::new();
        sleb(100_000_000, &mut column);
        uleb(1, &mut column);
        let mut body = vec![0, 1, 7, 1, 1, 0, 0, 0, 1];
        uleb(ACTION_COLUMN_SPEC, &mut body);
        uleb(column.len() as u64, &mut body);
        body.extend_from_slice(&column);
        let bomb = chunk(1, &body);
        assert!(bomb.len() < 32, "{} bytes", bomb.len());
        assert_eq!(
            check(&bomb, Limits::default()),
            Err(IntakeError::TooManyOps { limit_ops: OPS_MAX })
        );
        // Compressed, the same; and literal and null runs count too.
        let compressed = chunk(2, &deflate(&body));
        assert!(check(&compressed, Limits::default()).is_err());
        let mut runs = Vec::new();
        sleb(-3, &mut runs);
        for value in [1, 2, 3] {
            uleb(value, &mut runs);
        }
        sleb(0, &mut runs);
        uleb(5, &mut runs);
        assert_eq!(
            rle_actions(&runs).map(|a| (a.rows, a.increments)),
            Some((8, false))
        );
        // A literal run claiming more values than the column holds.
        let mut short = Vec::new();
        sleb(-1_000_000_000, &mut short);
        uleb(1, &mut short);
        assert!(rle_actions(&short).is_none());
    }

    /// Fuzzing finding F3: Automerge sums a counter's increments unchecked
    /// (past `i64::MAX` it wraps, or panics with debug assertions). Work
    /// orders use no counters, so a peer's increment is refused, however
    /// it is encoded; a counter value alone passes.
    #[test]
    fn a_counter_increment_from_a_peer_is_refused() {
        let mut doc = sample();
        doc.put(ROOT, "hits", automerge::ScalarValue::counter(i64::MAX - 1))
            .unwrap();
        doc.commit();
        let counter_only = doc.document().save_after(&[]);
        assert!(check(&counter_only, Limits::default()).is_ok());
        let heads = doc.get_heads();
        doc.increment(ROOT, "hits", 2).unwrap();
        doc.commit();
        for (name, bytes) in [
            ("change", doc.document().save_after(&heads)),
            ("changes", doc.document().save_after(&[])),
            ("document", doc.save_nocompress()),
            ("deflated document", doc.save()),
        ] {
            assert_eq!(
                check(&bytes, Limits::default()),
                Err(IntakeError::Increment),
                "{name}"
            );
        }
    }
}
