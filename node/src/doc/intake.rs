//! Automerge bytes from a peer, checked before Automerge parses them.
//!
//! Why: Automerge inflates the deflate-compressed parts of what it loads
//! (compressed change chunks, deflated columns of document and bundle
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
//! A chunk the walker cannot read ends the checked prefix, which is what
//! callers hand to Automerge: `load_incremental` ignores an unparsable
//! tail anyway, and nothing past it is ever inflated.

use std::io::Read;

/// Bytes all compressed parts of one input may inflate to, in total. A
/// work order is ~1 KB; a sync message carries at most a frame (4 MiB).
pub const INFLATED_BYTES_MAX: u64 = 8 * 1024 * 1024;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const HASH_BYTES: usize = 32;
const COLUMN_DEFLATE_BIT: u64 = 0b1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    #[error("compressed Automerge data inflates past the limit of {limit_bytes} bytes")]
    TooLarge { limit_bytes: u64 },
}

/// What [`check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Length of the prefix made of readable chunks: the bytes to load.
    pub prefix_bytes: usize,
    /// Bytes the compressed parts of that prefix inflate to.
    pub inflated_bytes: u64,
}

impl Checked {
    pub fn is_whole(&self, input: &[u8]) -> bool {
        self.prefix_bytes == input.len()
    }
}

/// Walk the concatenated chunks in `bytes`, inflating every compressed
/// part within `inflated_bytes_max` in all.
pub fn check(bytes: &[u8], inflated_bytes_max: u64) -> Result<Checked, IntakeError> {
    let mut budget = Budget {
        left_bytes: inflated_bytes_max,
        limit_bytes: inflated_bytes_max,
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
                })
            }
        }
    }
    Ok(Checked {
        prefix_bytes: bytes.len(),
        inflated_bytes: budget.used(),
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
        0 => columns_chunk(body, ChunkShape::Document, budget),
        // A change chunk: Automerge refuses compressed columns in it.
        1 => Ok(Some(())),
        // A compressed change chunk: the body is raw deflate.
        2 => budget.inflate(body),
        // A bundle: dependencies, actors, then change and op columns.
        3 => columns_chunk(body, ChunkShape::Bundle, budget),
        _ => Ok(None),
    }
}

#[derive(Clone, Copy)]
enum ChunkShape {
    Document,
    Bundle,
}

fn columns_chunk(
    body: &[u8],
    shape: ChunkShape,
    budget: &mut Budget,
) -> Result<Option<()>, IntakeError> {
    let mut reader = Reader::new(body);
    let prefix = match shape {
        ChunkShape::Document => reader.actors().and_then(|()| reader.hashes()),
        ChunkShape::Bundle => reader.hashes().and_then(|()| reader.actors()),
    };
    if prefix.is_none() {
        return Ok(None);
    }
    let (change_columns, op_columns) = match shape {
        ChunkShape::Document => {
            // Both metadata blocks first, then both data blocks.
            let (Some(changes), Some(ops)) = (reader.column_meta(), reader.column_meta()) else {
                return Ok(None);
            };
            (changes, ops)
        }
        ChunkShape::Bundle => {
            // Change metadata and data, then op metadata and data: the op
            // metadata is read after skipping the change data.
            let Some(changes) = reader.column_meta() else {
                return Ok(None);
            };
            let Some(change_data) = reader.take_columns(&changes) else {
                return Ok(None);
            };
            if inflate_columns(&changes, change_data, budget)?.is_none() {
                return Ok(None);
            }
            let Some(ops) = reader.column_meta() else {
                return Ok(None);
            };
            let Some(op_data) = reader.take_columns(&ops) else {
                return Ok(None);
            };
            return inflate_columns(&ops, op_data, budget);
        }
    };
    let (Some(change_data), Some(op_data)) = (
        reader.take_columns(&change_columns),
        reader.take_columns(&op_columns),
    ) else {
        return Ok(None);
    };
    if inflate_columns(&change_columns, change_data, budget)?.is_none() {
        return Ok(None);
    }
    inflate_columns(&op_columns, op_data, budget)
}

/// Column specifications and lengths of one metadata block.
type Columns = Vec<(u64, usize)>;

fn inflate_columns(
    columns: &Columns,
    data: &[u8],
    budget: &mut Budget,
) -> Result<Option<()>, IntakeError> {
    let mut offset = 0usize;
    for &(spec, length) in columns {
        let column = &data[offset..offset + length];
        offset += length;
        if spec & COLUMN_DEFLATE_BIT != 0 && budget.inflate(column)?.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(()))
}

struct Budget {
    left_bytes: u64,
    limit_bytes: u64,
}

impl Budget {
    fn used(&self) -> u64 {
        self.limit_bytes - self.left_bytes
    }

    /// Inflate `compressed` into a counting sink. `Ok(None)`: not deflate.
    fn inflate(&mut self, compressed: &[u8]) -> Result<Option<()>, IntakeError> {
        let decoder = flate2::bufread::DeflateDecoder::new(compressed);
        // One byte past the budget tells "over" from "exactly at".
        let mut capped = decoder.take(self.left_bytes.saturating_add(1));
        let Ok(inflated) = std::io::copy(&mut capped, &mut std::io::sink()) else {
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, Automerge, ReadDoc, ROOT};

    use super::*;

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
            let checked = check(&bytes, INFLATED_BYTES_MAX).unwrap();
            assert!(checked.is_whole(&bytes), "{name}: {checked:?}");
        }
        // The deflated cases really were inflated and counted.
        let saved = doc.save();
        assert!(check(&saved, INFLATED_BYTES_MAX).unwrap().inflated_bytes > 1000);
        assert!(Automerge::load(&saved).is_ok());
    }

    #[test]
    fn a_compressed_change_that_inflates_past_the_budget_is_refused() {
        let bomb = chunk(2, &deflate(&vec![0u8; 4 * 1024 * 1024]));
        assert!(bomb.len() < 16 * 1024, "{} bytes", bomb.len());
        assert_eq!(
            check(&bomb, 1024 * 1024),
            Err(IntakeError::TooLarge {
                limit_bytes: 1024 * 1024
            })
        );
        // The budget is shared by every chunk of the input.
        let half = chunk(2, &deflate(&vec![0u8; 600 * 1024]));
        let two = [half.clone(), half].concat();
        assert!(check(&two, 1024 * 1024).is_err());
        assert!(check(&two, 2 * 1024 * 1024).is_ok());
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
        assert!(check(&document, 1024 * 1024).is_err());
        assert!(check(&document, 4 * 1024 * 1024)
            .unwrap()
            .is_whole(&document));
        // The same as a bundle (no deps, no actors, no change columns).
        let mut bundle_body = vec![0, 0, 0, 1];
        uleb(0b1_0000 | COLUMN_DEFLATE_BIT, &mut bundle_body);
        uleb(column.len() as u64, &mut bundle_body);
        bundle_body.extend_from_slice(&column);
        assert!(check(&chunk(3, &bundle_body), 1024 * 1024).is_err());
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
            let checked = check(&bytes, INFLATED_BYTES_MAX).unwrap();
            assert_eq!(checked.prefix_bytes, prefix, "{name}");
        }
    }

    #[test]
    fn the_checked_prefix_loads_the_readable_changes() {
        let mut doc = sample();
        let changes = doc.document().save_after(&[]);
        let noisy = [changes.clone(), vec![0x85, 0x6f, 0x4a, 0x83, 0, 0]].concat();
        let checked = check(&noisy, INFLATED_BYTES_MAX).unwrap();
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
}
