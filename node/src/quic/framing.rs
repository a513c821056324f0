//! Frames on a QUIC stream: a big-endian `u32` length, then that many bytes.
//!
//! Why check the length before reading: a peer that announces a 4 GiB
//! frame must cost us four bytes, not an allocation. Every reader takes
//! its limit as an argument (the sync session uses `FRAME_BYTES_MAX`,
//! enrollment a much smaller one).

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("frame of {size_bytes} bytes announced; the limit is {limit_bytes}")]
    TooLarge { size_bytes: u64, limit_bytes: usize },
    #[error("an empty frame")]
    Empty,
    #[error("the stream ended inside a frame")]
    Truncated,
    #[error("reading from the peer failed: {0}")]
    Read(String),
    #[error("writing to the peer failed: {0}")]
    Write(String),
}

/// Read one frame. `Ok(None)`: the peer finished the stream between frames.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    limit_bytes: usize,
) -> Result<Option<Vec<u8>>, FramingError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(FramingError::Truncated),
        Err(quinn::ReadExactError::ReadError(e)) => return Err(FramingError::Read(e.to_string())),
    }
    let size = u32::from_be_bytes(prefix);
    check_size(u64::from(size), limit_bytes)?;
    let mut body = vec![0u8; size as usize];
    match recv.read_exact(&mut body).await {
        Ok(()) => Ok(Some(body)),
        Err(quinn::ReadExactError::FinishedEarly(_)) => Err(FramingError::Truncated),
        Err(quinn::ReadExactError::ReadError(e)) => Err(FramingError::Read(e.to_string())),
    }
}

/// Refuse a frame by its announced size, before reading its body.
pub fn check_size(size_bytes: u64, limit_bytes: usize) -> Result<(), FramingError> {
    if size_bytes == 0 {
        return Err(FramingError::Empty);
    }
    if size_bytes > limit_bytes as u64 {
        return Err(FramingError::TooLarge {
            size_bytes,
            limit_bytes,
        });
    }
    Ok(())
}

/// Write one frame (prefix and body).
pub async fn write_frame(send: &mut quinn::SendStream, body: &[u8]) -> Result<(), FramingError> {
    let size = u32::try_from(body.len()).map_err(|_| FramingError::TooLarge {
        size_bytes: body.len() as u64,
        limit_bytes: u32::MAX as usize,
    })?;
    send.write_all(&size.to_be_bytes())
        .await
        .map_err(|e| FramingError::Write(e.to_string()))?;
    send.write_all(body)
        .await
        .map_err(|e| FramingError::Write(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_judged_before_reading() {
        assert_eq!(check_size(1, 10), Ok(()));
        assert_eq!(check_size(10, 10), Ok(()));
        assert_eq!(check_size(0, 10), Err(FramingError::Empty));
        assert_eq!(
            check_size(u64::from(u32::MAX), 10),
            Err(FramingError::TooLarge {
                size_bytes: u64::from(u32::MAX),
                limit_bytes: 10
            })
        );
    }
}
