//! Batch encoding: whole documents, pushed changes and record copies go
//! in one frame as `postcard`, zstd-compressed together (zstd over many
//! saved documents shares their dictionary of field names). The decoder
//! caps what a frame may inflate to.

use super::{protocol, Session, SessionError};

impl Session {
    /// The documents of a `DocBatch` or `Prime` (or the changes of an
    /// `AnnouncePush`), at most twice `batch_bytes_max` uncompressed.
    pub(super) fn decode_batch<T: serde::de::DeserializeOwned>(
        &self,
        compressed: &[u8],
    ) -> Result<T, SessionError> {
        let plain = zstd::bulk::decompress(compressed, self.config.batch_bytes_max * 2)
            .map_err(|e| protocol(format!("undecodable document batch: {e}")))?;
        postcard::from_bytes(&plain).map_err(|e| protocol(format!("malformed document batch: {e}")))
    }
}

/// Whole documents, `postcard`-encoded and zstd-compressed together: zstd
/// over many saved documents shares their dictionary of field names, ~290
/// B per work order instead of ~930 B (bench notes).
pub(in crate::sync) fn compress_batch<T: serde::Serialize + ?Sized>(
    batch: &T,
    level: i32,
) -> Vec<u8> {
    let plain = postcard::to_allocvec(batch).expect("postcard encoding of a batch");
    zstd::bulk::compress(&plain, level).expect("zstd compression into memory")
}

/// A batch of whole documents as postcard writes it: `serde_bytes`, the
/// same encoding as `Vec<u8>` in one go instead of a serde call per byte.
pub(super) fn docs_as_bytes(batch: &[(String, Vec<u8>)]) -> Vec<(&str, &serde_bytes::Bytes)> {
    batch
        .iter()
        .map(|(id, bytes)| (id.as_str(), serde_bytes::Bytes::new(bytes)))
        .collect()
}

/// The reading side of [`docs_as_bytes`].
pub(super) fn decode_docs(batch: Vec<(String, serde_bytes::ByteBuf)>) -> Vec<(String, Vec<u8>)> {
    batch
        .into_iter()
        .map(|(id, bytes)| (id, bytes.into_vec()))
        .collect()
}

/// The changes of an `AnnouncePush` as postcard writes them (see
/// [`docs_as_bytes`]).
pub(super) fn pushes_as_bytes(pushed: &[Vec<u8>]) -> Vec<&serde_bytes::Bytes> {
    pushed.iter().map(|c| serde_bytes::Bytes::new(c)).collect()
}

/// The reading side of [`pushes_as_bytes`].
pub(super) fn decode_pushes(pushed: Vec<serde_bytes::ByteBuf>) -> Vec<Vec<u8>> {
    pushed.into_iter().map(|c| c.into_vec()).collect()
}
