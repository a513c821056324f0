//! Sync protocol frames: what two nodes say to each other.
//!
//! Binary (postcard), one frame per length-prefixed message on a reliable,
//! ordered stream. Every frame has a size limit checked *before* decoding,
//! and decoding never panics: a frame from a peer is untrusted input.
//!
//! Versioning: `Hello` carries the range of protocol versions a node speaks;
//! the highest common version is used, and with none in common both sides
//! send `Refuse` and close without touching any data. New frame variants are
//! added at the end of the enum only (postcard encodes the variant index).
//!
//! Byte payloads are `serde_bytes`: postcard encodes them exactly as a
//! `Vec<u8>` (length, then the bytes), but reads and writes them in one go
//! instead of one serde call per byte, which was 7% of a primed laptop's
//! sync thread.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks best.
///
/// - 1: announce, want, batches of whole documents, Automerge sync.
/// - 2: adds `Prime`: an office primes a peer that holds nothing of its
///   changelog with whole documents, without announcing them first.
/// - 3: adds `AnnouncePush`: an office sends the changes it expects the
///   peer to lack together with its announce, so a reconnect after small
///   edits needs no Automerge sync round trips.
/// - 4: adds `Records`: an office sends the data records the peer's role
///   may read, read-only copies, with the page that covers them.
/// - 5: adds `Holding`, `HoldingWanted` and `HoldingList`: a technician's
///   device tells an office what it holds (a digest, and the list only
///   when the digest differs from the office's expectation), so each
///   device is revoked on its own, by any central, even one that never
///   sent it the document.
/// - 6: adds `OfficeKeys` and `Vouch`: offices vouch, by signature, for
///   the history of the documents they send, so a change relayed by a
///   technician's device (to another device of its user, or to another
///   central) is judged by who accepted it, not by who relayed it. And an
///   office may re-offer, in an `Announce` that does not advance its
///   changelog, what a device's holdings list lacks.
/// - 7: `Records` between two offices may also carry office-only records
///   (`collection::office_only`: users and their enrollments), merged by
///   the receiver instead of newest-wins. An older office would refuse
///   them as internal, so they go only to a peer of version 7.
pub const PROTOCOL_VERSION: u16 = 7;
/// The first version that has `Prime`.
pub const PROTOCOL_VERSION_PRIME: u16 = 2;
/// The first version that has `AnnouncePush`.
pub const PROTOCOL_VERSION_PUSH: u16 = 3;
/// The first version that has `Records`.
pub const PROTOCOL_VERSION_RECORDS: u16 = 4;
/// The first version that has `Holding`, `HoldingWanted`, `HoldingList`.
pub const PROTOCOL_VERSION_HOLDINGS: u16 = 5;
/// The first version that has `OfficeKeys` and `Vouch`.
pub const PROTOCOL_VERSION_VOUCH: u16 = 6;
/// The first version in which an office may offer documents again in a
/// page that does not advance its changelog (`Announce` with the previous
/// page's `upto_seq`): what a device's holdings list lacks.
pub const PROTOCOL_VERSION_REOFFER: u16 = 6;
/// The first version whose `Records` may carry office-only records.
pub const PROTOCOL_VERSION_USERS: u16 = 7;
/// The oldest version this build still speaks.
pub const PROTOCOL_VERSION_MIN: u16 = 1;

/// Largest encoded frame accepted, in bytes. Document batches are split to
/// stay well below it.
pub const FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most documents named in one `Announce` or `Want`.
pub const PAGE_DOCS_MAX: usize = 512;
/// Largest uncompressed payload of one `DocBatch`, in bytes.
pub const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Longest free-text reason in a frame.
pub const REASON_BYTES_MAX: usize = 1024;
/// Most office keys one `OfficeKeys` names.
pub const OFFICE_KEYS_MAX: usize = 64;
/// Most vouchers one `Vouch` carries (a page of documents, a few heads
/// each).
pub const VOUCHERS_MAX: usize = 4 * PAGE_DOCS_MAX;
/// Length of an office's signature on a voucher (Ed25519).
pub const VOUCHER_SIGNATURE_BYTES: usize = 64;

/// An office's public signing key (Ed25519).
pub type OfficeKey = [u8; 32];

/// An office's word that it holds document `id` at change `head`, and so
/// accepted every change in that change's history (`node::vouch`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Voucher {
    pub id: String,
    pub head: Hash,
    /// The vouching office's key.
    pub key: OfficeKey,
    /// Its signature over the head (64 bytes).
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

pub type Hash = [u8; 32];

/// What one side has durably received from the other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCheckpoint {
    /// The epoch of the store whose seqs `seq` counts.
    pub epoch: [u8; 16],
    pub seq: u64,
}

/// A document that changed on the sender, with its heads there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocHeads {
    pub id: String,
    pub heads: Vec<Hash>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// First frame from each side.
    Hello {
        version_min: u16,
        version_max: u16,
        node_id: String,
        epoch: [u8; 16],
        /// The checkpoint the sender holds for the receiver, if any.
        your_checkpoint: Option<WireCheckpoint>,
    },
    /// No common version, or the peer is not allowed: close, touch nothing.
    Refuse { reason: String },
    /// Documents visible to the receiver that changed in the sender's
    /// changelog up to `upto_seq` (the page's last scanned seq).
    Announce {
        page: u64,
        upto_seq: u64,
        docs: Vec<DocHeads>,
    },
    /// The receiver's answer to a page: documents it has never seen (send
    /// whole). `sync` is left empty and ignored (the receiver starts each
    /// reconciliation with its own `DocSync`); it stays in the frame so
    /// protocol version 1 peers decode each other.
    Want {
        page: u64,
        full: Vec<String>,
        sync: Vec<String>,
    },
    /// Whole documents (`save_nocompress` bytes), zstd-compressed together:
    /// a `postcard` `Vec<(String, Vec<u8>)>` inside.
    DocBatch {
        page: u64,
        #[serde(with = "serde_bytes")]
        compressed: Vec<u8>,
    },
    /// One Automerge sync message for one document.
    DocSync {
        id: String,
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
    },
    /// Everything announced up to `upto_seq` is durable on the sender of
    /// this frame (it advanced its checkpoint).
    PageDone { page: u64, upto_seq: u64 },
    /// A document the sender will not accept from the receiver (no write
    /// access, or it may not see it).
    Rejected { id: String, reason: String },
    /// The receiver must delete these documents: its user may no longer
    /// see them (reassignment after the grace period).
    Revoke { ids: Vec<String> },
    /// The sender purged these documents durably.
    Revoked { ids: Vec<String> },
    /// Version 2. A page of the office's changelog for a peer that holds
    /// none of it (no checkpoint for the office, or one from a wiped
    /// store): the whole documents visible to the peer that changed up to
    /// `upto_seq`, in one zstd-compressed batch, as in `DocBatch`. It
    /// stands for `Announce`, `Want` and `DocBatch` at once (those cost
    /// ~110 bytes per document on the wire when priming). Answered with
    /// `PageDone` once durable.
    Prime {
        page: u64,
        upto_seq: u64,
        #[serde(with = "serde_bytes")]
        compressed: Vec<u8>,
    },
    /// Version 3. An office's `Announce` with changes: `compressed` is a
    /// zstd-compressed `postcard` `Vec<Vec<u8>>`, one entry per document
    /// in `docs` (in that order), each Automerge change chunks the office
    /// expects the receiver to lack (empty: none pushed). The receiver
    /// applies what it can; a document still missing announced heads is
    /// reconciled as after `Announce`. Edits made since the last sync then
    /// cost one frame instead of three sync messages per document.
    AnnouncePush {
        page: u64,
        upto_seq: u64,
        docs: Vec<DocHeads>,
        #[serde(with = "serde_bytes")]
        compressed: Vec<u8>,
    },
    /// Version 4. Copies of data records from an office, sent just before
    /// the page (`Announce`, `AnnouncePush` or `Prime`) whose changelog
    /// entries they are: a zstd-compressed `postcard` `Vec<RecordCopy>`.
    /// The receiver stores each copy that is newer than its own before it
    /// completes the page, so its checkpoint never passes a record it lacks.
    /// Only an office sends them; a laptop never sends record writes.
    Records {
        #[serde(with = "serde_bytes")]
        compressed: Vec<u8>,
    },
    /// Version 5. A technician's device to an office, after the hellos:
    /// the XOR of `sha256(id)` over every work order it holds
    /// (`holdings_digest`). An office whose expectation differs (the
    /// documents assigned to the device's user, the same digest) asks for
    /// the list; an unchanged reconnect costs this one frame.
    Holding { digest: Hash },
    /// Version 5. The office's answer to a `Holding` it did not expect:
    /// send the list.
    HoldingWanted,
    /// Version 5. The ids of the work orders the device holds, in pages of
    /// at most `PAGE_DOCS_MAX`; `last` on the final page. The office
    /// revokes what the device's user may no longer see.
    HoldingList { ids: Vec<String>, last: bool },
    /// Version 6. An office's signing keys, sent by an office after the
    /// hellos: its own first, then the other offices' it knows. The
    /// receiver trusts them because an office said so over mutual TLS; a
    /// technician's device never sends this frame.
    OfficeKeys { keys: Vec<OfficeKey> },
    /// Version 6. Vouchers for documents whose changes follow in the next
    /// frames (`Prime`, `DocBatch`, `AnnouncePush`, `DocSync`): an office
    /// vouches for its own heads; a technician's device forwards the
    /// vouchers it was given, so what it relays is judged as what an
    /// office accepted.
    Vouch { vouchers: Vec<Voucher> },
}

/// `reason` as a `Refuse` or `Rejected` may carry it: cut to at most
/// [`REASON_BYTES_MAX`] bytes, on a character boundary. A list of field-rule
/// violations can be longer, and a receiver rightly refuses such a frame.
pub fn bounded_reason(reason: String) -> String {
    if reason.len() <= REASON_BYTES_MAX {
        return reason;
    }
    prefix_within(&reason, REASON_BYTES_MAX).to_string()
}

/// The longest prefix of `text` of at most `bytes_max` bytes that ends on
/// a character boundary.
pub fn prefix_within(text: &str, bytes_max: usize) -> &str {
    let mut cut = text.len().min(bytes_max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// The digest of a set of work-order ids: the XOR of each id's SHA-256,
/// so a store keeps it up to date one document at a time and the order
/// of ids does not matter (`Frame::Holding`). An empty set is all zeros.
pub fn holdings_digest<'a>(ids: impl IntoIterator<Item = &'a str>) -> Hash {
    let mut digest = [0; 32];
    for id in ids {
        holdings_toggle(&mut digest, id);
    }
    digest
}

/// Add `id` to a [`holdings_digest`], or take it out (XOR is its own
/// inverse).
pub fn holdings_toggle(digest: &mut Hash, id: &str) {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(id.as_bytes());
    for (byte, h) in digest.iter_mut().zip(hash.iter()) {
        *byte ^= h;
    }
}

/// A data record as it travels to a peer: read-only there, and a newer
/// version replaces an older one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCopy {
    pub collection: String,
    pub key: String,
    pub version: u64,
    pub deleted: bool,
    /// The JSON value (empty when deleted).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// A frame could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size_bytes} bytes exceeds the limit of {limit_bytes}")]
    TooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("frame field `{field}` exceeds its limit")]
    FieldTooLarge { field: &'static str },
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        // Plain data into a Vec: postcard cannot fail here.
        let bytes = postcard::to_allocvec(self).expect("postcard encoding of a frame");
        debug_assert!(
            bytes.len() <= FRAME_BYTES_MAX,
            "encoder must split large payloads"
        );
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        if bytes.len() > FRAME_BYTES_MAX {
            return Err(FrameError::TooLarge {
                size_bytes: bytes.len(),
                limit_bytes: FRAME_BYTES_MAX,
            });
        }
        let frame: Frame =
            postcard::from_bytes(bytes).map_err(|e| FrameError::Malformed(e.to_string()))?;
        frame.check_limits()?;
        Ok(frame)
    }

    fn check_limits(&self) -> Result<(), FrameError> {
        let too_large = |field| Err(FrameError::FieldTooLarge { field });
        match self {
            Frame::Refuse { reason } | Frame::Rejected { reason, .. }
                if reason.len() > REASON_BYTES_MAX =>
            {
                too_large("reason")
            }
            Frame::Announce { docs, .. } | Frame::AnnouncePush { docs, .. }
                if docs.len() > PAGE_DOCS_MAX =>
            {
                too_large("docs")
            }
            Frame::Want { full, sync, .. } if full.len() + sync.len() > PAGE_DOCS_MAX => {
                too_large("want")
            }
            Frame::Revoke { ids } | Frame::Revoked { ids } | Frame::HoldingList { ids, .. }
                if ids.len() > PAGE_DOCS_MAX =>
            {
                too_large("ids")
            }
            Frame::OfficeKeys { keys } if keys.len() > OFFICE_KEYS_MAX => too_large("keys"),
            Frame::Vouch { vouchers } if vouchers.len() > VOUCHERS_MAX => too_large("vouchers"),
            Frame::Vouch { vouchers }
                if vouchers
                    .iter()
                    .any(|v| v.signature.len() != VOUCHER_SIGNATURE_BYTES) =>
            {
                Err(FrameError::Malformed(format!(
                    "a voucher's signature is not {VOUCHER_SIGNATURE_BYTES} bytes"
                )))
            }
            _ => Ok(()),
        }
    }

    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "hello",
            Frame::Refuse { .. } => "refuse",
            Frame::Announce { .. } => "announce",
            Frame::Want { .. } => "want",
            Frame::DocBatch { .. } => "doc_batch",
            Frame::DocSync { .. } => "doc_sync",
            Frame::PageDone { .. } => "page_done",
            Frame::Rejected { .. } => "rejected",
            Frame::Revoke { .. } => "revoke",
            Frame::Revoked { .. } => "revoked",
            Frame::Prime { .. } => "prime",
            Frame::AnnouncePush { .. } => "announce_push",
            Frame::Records { .. } => "records",
            Frame::Holding { .. } => "holding",
            Frame::HoldingWanted => "holding_wanted",
            Frame::HoldingList { .. } => "holding_list",
            Frame::OfficeKeys { .. } => "office_keys",
            Frame::Vouch { .. } => "vouch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let frame = Frame::Announce {
            page: 1,
            upto_seq: 9,
            docs: vec![DocHeads {
                id: "a".into(),
                heads: vec![[7; 32]],
            }],
        };
        assert_eq!(Frame::decode(&frame.encode()), Ok(frame));
        // Bytes on the wire as a plain `Vec<u8>` encodes them (variant 5,
        // id, length, bytes): older peers read these frames unchanged.
        let sync = Frame::DocSync {
            id: "a".into(),
            message: vec![1, 2, 3],
        };
        assert_eq!(sync.encode(), [5, 1, b'a', 3, 1, 2, 3]);
        assert!(matches!(
            Frame::decode(&[0xff, 0xff, 0xff]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            Frame::decode(&vec![0; FRAME_BYTES_MAX + 1]),
            Err(FrameError::TooLarge { .. })
        ));
        // A long reason is cut to fit, never mid-character.
        let long = bounded_reason("é".repeat(REASON_BYTES_MAX));
        assert!(long.len() <= REASON_BYTES_MAX && long.len() >= REASON_BYTES_MAX - 1);
        let rejected = Frame::Rejected {
            id: "a".into(),
            reason: long,
        };
        assert_eq!(Frame::decode(&rejected.encode()), Ok(rejected));
        assert_eq!(bounded_reason("short".into()), "short");
        let many = Frame::Revoke {
            ids: vec![String::new(); PAGE_DOCS_MAX + 1],
        };
        assert!(matches!(
            Frame::decode(&many.encode()),
            Err(FrameError::FieldTooLarge { .. })
        ));
    }
}
