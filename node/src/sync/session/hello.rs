//! The handshake: the peer's `Hello` settles the protocol version both
//! sides speak and where each direction resumes.
//!
//! A checkpoint counts only for the store life it was made in (the
//! store's epoch): a wiped-and-recreated store restarts its seqs, so a
//! checkpoint from its earlier life would skip its new changes. Nothing is
//! announced before the hello (see `handle_write_done`): our cursor is not
//! the peer's checkpoint until now.

use fieldsync_schemas::sync_frame::{
    bounded_reason, Frame, WireCheckpoint, PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_PRIME,
    PROTOCOL_VERSION_VOUCH,
};

use super::{protocol, store_error, Event, Phase, Session, SessionError};
use crate::sync::store::SyncStore;

impl Session {
    pub(super) fn on_hello<S: SyncStore>(
        &mut self,
        now_ms: u64,
        (theirs_min, theirs_max): (u16, u16),
        node_id: String,
        epoch: [u8; 16],
        your_checkpoint: Option<WireCheckpoint>,
        store: &mut S,
    ) -> Result<(), SessionError> {
        let ours_max = self.config.protocol_version_max;
        let common = ours_max.min(theirs_max);
        if common < PROTOCOL_VERSION_MIN.max(theirs_min) {
            let error = SessionError::Version {
                ours_min: PROTOCOL_VERSION_MIN,
                ours_max,
                theirs_min,
                theirs_max,
            };
            self.outbox.push_back(Frame::Refuse {
                reason: bounded_reason(error.to_string()),
            });
            return Err(error);
        }
        if let Some(error) = self.needs_vouchers(common) {
            self.outbox.push_back(Frame::Refuse {
                reason: bounded_reason(error.to_string()),
            });
            return Err(error);
        }
        if node_id != self.peer_node_id {
            return Err(protocol(
                "hello names a node id other than the peer's certificate",
            ));
        }
        self.version = common;
        // Their checkpoint for us counts only if it is for this store's
        // life: a wiped-and-recreated store restarts its seqs.
        let out_cursor = match your_checkpoint {
            Some(checkpoint)
                if checkpoint.epoch == store.epoch() && checkpoint.seq <= store.last_seq() =>
            {
                checkpoint.seq
            }
            _ => 0,
        };
        self.progress.peer_acked_seq = out_cursor;
        // A peer with nothing of ours is primed with whole documents, by
        // an office only: a receiver takes unannounced documents from no
        // one else (a technician's must pass the field rules, change by
        // change). A peer that holds some documents anyway (a wiped
        // office's laptops) merges them whole: more bytes, same result.
        let prime_until_seq =
            if self.config.office && common >= PROTOCOL_VERSION_PRIME && out_cursor == 0 {
                store.last_seq()
            } else {
                0
            };
        self.outbound.start(out_cursor, prime_until_seq);
        // Ours for them likewise: if they were wiped, start from zero.
        let in_checkpoint_seq = match store.checkpoint(&self.peer_node_id).map_err(store_error)? {
            Some(checkpoint) if checkpoint.epoch == epoch => checkpoint.seq,
            _ => 0,
        };
        self.inbound.start(epoch, in_checkpoint_seq);
        self.phase = Phase::Ready;
        self.events.push_back(Event::Ready { peer_epoch: epoch });
        self.send_holding(store)?;
        self.send_office_keys(store)?;
        self.send_revocations(now_ms, store)?;
        self.pump(now_ms, store)
    }

    /// An office with another office refuses a technician's device that
    /// cannot forward vouchers (before protocol 6). Such a device relays
    /// one office's changes to the other unvouched; each office would take
    /// them as the device's own and compensate them, and the two offices'
    /// compensations would undo each other for as long as the device
    /// carries them. A sole office has no one to be relayed from, so it
    /// keeps serving older devices (README: upgrade the devices before a
    /// second central is added).
    fn needs_vouchers(&self, common: u16) -> Option<SessionError> {
        let relay_possible = self.config.office && !self.config.sole_office;
        (relay_possible && !self.peer.is_office() && common < PROTOCOL_VERSION_VOUCH).then_some(
            SessionError::NeedsVouchers {
                theirs_max: common,
                needed: PROTOCOL_VERSION_VOUCH,
            },
        )
    }
}
