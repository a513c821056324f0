//! Vouching (protocol 6): an office's signature on the heads it sends, so
//! a change a technician's device relays is judged by the office that
//! accepted it, not as the relay's (why and what is signed: `crate::vouch`).
//!
//! The frames, in session order:
//! - after the hellos an office sends `OfficeKeys` (its own key, then the
//!   other offices' it knows); the receiver remembers keys only from an
//!   office peer;
//! - an office sends `Vouch` just before a frame that carries a document's
//!   changes to a technician's device (`Prime`, `DocBatch`,
//!   `AnnouncePush`, `DocSync`), when that device may relay them (its user
//!   has other devices, or there is another office); the device stores
//!   the vouchers;
//! - a device sends the vouchers it holds for a document just before a
//!   `DocSync` with changes for it, unless it sent the same ones already
//!   in this session;
//! - a receiver verifies vouchers from a device against the office keys it
//!   knows, and judges only the changes no verified voucher covers
//!   (`vouched_base`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use automerge::{Automerge, ChangeHash, ReadDoc};
use fieldsync_schemas::sync_frame::{
    Frame, Hash, OfficeKey, Voucher, OFFICE_KEYS_MAX, PROTOCOL_VERSION_VOUCH, VOUCHERS_MAX,
};

use super::{protocol, store_error, Session, SessionError};
use crate::access::PeerAccess;
use crate::sync::store::SyncStore;
use crate::vouch::{self, VOUCHERS_PER_DOC_MAX};

/// Documents with verified vouchers a session keeps, at most; past it the
/// oldest are forgotten (their changes are then judged as the peer's).
const VERIFIED_DOCS_MAX: usize = 4096;
/// Documents a device remembers having forwarded vouchers for in one
/// session, at most; past it the memory starts again (a voucher sent twice
/// costs only bytes).
const FORWARDED_DOCS_MAX: usize = 4096;

#[derive(Default)]
pub(super) struct Vouching {
    /// Office: whether this session vouches for what it sends (once true,
    /// it stays: `own_vouchers`).
    vouch_to_peer: bool,
    /// Heads verified vouchers cover, by document, from a device peer.
    verified: BTreeMap<String, Vec<ChangeHash>>,
    /// Documents for which the device forwarded a well-signed voucher by
    /// a key we do not know (yet): an office we have not met may have
    /// accepted those changes, so we refuse rather than compensate them.
    unknown_signer: BTreeSet<String>,
    /// Device: the heads of the vouchers last sent to the peer, by
    /// document, this session.
    forwarded: HashMap<String, Vec<Hash>>,
}

impl Session {
    fn speaks_vouch(&self) -> bool {
        self.version >= PROTOCOL_VERSION_VOUCH
    }

    /// After the hellos, an office names the office keys it knows.
    pub(super) fn send_office_keys<S: SyncStore>(&mut self, store: &S) -> Result<(), SessionError> {
        let Some(signer) = self.config.signer.clone() else {
            return Ok(());
        };
        if !self.speaks_vouch() || !self.config.office {
            return Ok(());
        }
        let others = store.office_keys().map_err(store_error)?;
        let mut keys = vec![signer.key()];
        keys.extend(others.into_iter().filter(|k| *k != signer.key()));
        keys.truncate(OFFICE_KEYS_MAX);
        self.outbox.push_back(Frame::OfficeKeys { keys });
        Ok(())
    }

    /// Office keys from the peer: believed from an office only.
    pub(super) fn on_office_keys<S: SyncStore>(
        &mut self,
        keys: Vec<OfficeKey>,
        store: &mut S,
    ) -> Result<(), SessionError> {
        // Only a peer pinned as an office, not an operator's node: a key
        // named here makes changes the office's wherever they are relayed.
        if !self.speaks_vouch() || self.peer != PeerAccess::Office {
            return Err(protocol("only an office names office keys (version 6)"));
        }
        let own = self.config.signer.as_ref().map(|s| s.key());
        let known = store.office_keys().map_err(store_error)?;
        let mut new: Vec<OfficeKey> = Vec::new();
        for key in keys {
            if Some(key) != own && !known.contains(&key) && !new.contains(&key) {
                new.push(key);
            }
        }
        new.truncate(OFFICE_KEYS_MAX.saturating_sub(known.len()));
        if !new.is_empty() {
            store.add_office_keys(&new).map_err(store_error)?;
        }
        Ok(())
    }

    /// Vouchers from the peer. From an office, a device keeps them to
    /// forward (an office's word needs no check, and an office ignores
    /// them: it judges nothing from an office). From a device, each is
    /// verified against the office keys we know; the verified ones decide
    /// what is judged (`vouched_base`), and a device keeps them too.
    pub(super) fn on_vouch<S: SyncStore>(
        &mut self,
        vouchers: Vec<Voucher>,
        store: &mut S,
    ) -> Result<(), SessionError> {
        if !self.speaks_vouch() {
            return Err(protocol("vouch before version 6"));
        }
        debug_assert!(vouchers.len() <= VOUCHERS_MAX, "checked by the decoder");
        let kept = if self.peer.is_office() {
            vouchers
        } else {
            // A device forwards one document's vouchers before its
            // `DocSync`: more would only cost us signature checks.
            if vouchers.len() > VOUCHERS_PER_DOC_MAX {
                return Err(protocol(format!(
                    "a device forwards at most {VOUCHERS_PER_DOC_MAX} vouchers at once"
                )));
            }
            self.verified_vouchers(vouchers, store)?
        };
        if self.config.office {
            return Ok(());
        }
        let mut by_doc: BTreeMap<String, Vec<Voucher>> = BTreeMap::new();
        for voucher in kept {
            by_doc.entry(voucher.id.clone()).or_default().push(voucher);
        }
        for (id, vouchers) in by_doc {
            store.put_vouchers(&id, &vouchers).map_err(store_error)?;
        }
        Ok(())
    }

    /// The vouchers signed by an office we know (or us), each remembered
    /// as covering its head for this session.
    fn verified_vouchers<S: SyncStore>(
        &mut self,
        vouchers: Vec<Voucher>,
        store: &S,
    ) -> Result<Vec<Voucher>, SessionError> {
        let mut keys = store.office_keys().map_err(store_error)?;
        keys.extend(self.config.signer.as_ref().map(|s| s.key()));
        let mut kept = Vec::new();
        for voucher in vouchers {
            if !vouch::is_signed(&voucher) {
                tracing::debug!(peer = %self.peer_node_id, id = %voucher.id, "a voucher we cannot verify");
                continue;
            }
            if !keys.contains(&voucher.key) {
                if self.vouching.unknown_signer.len() < VERIFIED_DOCS_MAX {
                    self.vouching.unknown_signer.insert(voucher.id.clone());
                }
                continue;
            }
            if !self.vouching.verified.contains_key(&voucher.id)
                && self.vouching.verified.len() >= VERIFIED_DOCS_MAX
            {
                self.vouching.verified.pop_first();
            }
            let heads = self
                .vouching
                .verified
                .entry(voucher.id.clone())
                .or_default();
            let head = ChangeHash(voucher.head);
            if !heads.contains(&head) {
                if heads.len() >= VOUCHERS_PER_DOC_MAX {
                    heads.remove(0);
                }
                heads.push(head);
            }
            kept.push(voucher);
        }
        Ok(kept)
    }

    /// Did the device vouch for `id` with a key we do not know? Then what
    /// we judge may be an office's we have not met yet (its key comes at
    /// our first hello with it), and breaking the rules is refused, not
    /// compensated: the change reaches us from that office itself, and a
    /// device gains nothing by naming a made-up key (its changes are
    /// refused instead of compensated).
    pub(super) fn vouched_by_unknown_office(&self, id: &str) -> bool {
        self.vouching.unknown_signer.contains(id)
    }

    /// Is a head the device vouched for (verified) missing from `trial`?
    /// Then its message applied in part (some changes wait for others),
    /// and what is judged now may lie under that head: an office's,
    /// still unattributed (simulator, seed 144).
    pub(super) fn vouched_head_missing(&self, id: &str, trial: &Automerge) -> bool {
        self.vouching
            .verified
            .get(id)
            .into_iter()
            .flatten()
            .any(|head| trial.get_change_by_hash(head).is_none())
    }

    /// The heads below which the peer's changes to `id` are an office's:
    /// `before`, and every verified vouched head the trial now holds.
    pub(super) fn vouched_base(
        &self,
        id: &str,
        trial: &Automerge,
        before: &[ChangeHash],
    ) -> Vec<ChangeHash> {
        let mut base = before.to_vec();
        for head in self.vouching.verified.get(id).into_iter().flatten() {
            if !base.contains(head) && trial.get_change_by_hash(head).is_some() {
                base.push(*head);
            }
        }
        base
    }

    /// An office vouches for its heads of the documents whose changes it
    /// is about to send (`Prime`, `DocBatch`, `AnnouncePush`: office
    /// frames only; a `DocSync` goes through [`Self::vouch_before_doc_sync`]).
    pub(super) fn vouch_before_sending<'a, S: SyncStore>(
        &mut self,
        docs: impl IntoIterator<Item = (&'a str, &'a [ChangeHash])>,
        store: &S,
    ) -> Result<(), SessionError> {
        if !self.speaks_vouch() || !self.config.office {
            return Ok(());
        }
        let docs: Vec<(&str, &[ChangeHash])> = docs.into_iter().collect();
        let vouchers = self.own_vouchers(&docs, store)?;
        for chunk in vouchers.chunks(VOUCHERS_MAX) {
            self.outbox.push_back(Frame::Vouch {
                vouchers: chunk.to_vec(),
            });
        }
        Ok(())
    }

    /// Before a `DocSync` that carries changes of `doc`: an office vouches
    /// for its heads; a device forwards the vouchers it holds that cover
    /// them (`vouch::covering`), unless it sent the same already in this
    /// session, in a frame of its own (a receiver takes at most one
    /// document's vouchers at once).
    pub(super) fn vouch_before_doc_sync<S: SyncStore>(
        &mut self,
        id: &str,
        doc: &Automerge,
        store: &S,
    ) -> Result<(), SessionError> {
        if !self.speaks_vouch() {
            return Ok(());
        }
        if self.config.office {
            return self.vouch_before_sending([(id, doc.get_heads().as_slice())], store);
        }
        let held = store.vouchers(id).map_err(store_error)?;
        let vouchers = vouch::covering(doc, &held);
        let heads: Vec<Hash> = vouchers.iter().map(|v| v.head).collect();
        if heads.is_empty() || self.vouching.forwarded.get(id) == Some(&heads) {
            return Ok(());
        }
        if self.vouching.forwarded.len() >= FORWARDED_DOCS_MAX {
            self.vouching.forwarded.clear();
        }
        self.vouching.forwarded.insert(id.to_string(), heads);
        self.outbox.push_back(Frame::Vouch { vouchers });
        Ok(())
    }

    fn own_vouchers<S: SyncStore>(
        &mut self,
        docs: &[(&str, &[ChangeHash])],
        store: &S,
    ) -> Result<Vec<Voucher>, SessionError> {
        let Some(signer) = self.config.signer.clone() else {
            return Ok(Vec::new());
        };
        // The one rule: a device that may relay (its user has another
        // device, or another office is configured or known). Judged at each send until it
        // holds: another office may become known during the session (a
        // session that began before we met it vouched for nothing, and two
        // offices then compensated each other's edits relayed through the
        // device for ever: simulator, `--centrals 2` seeds 194, 251).
        // Another office configured counts as known before its key is: a
        // key comes at hello with that office, and is lost with a crash
        // before its flush; meanwhile we vouched for nothing, and that
        // office compensated our edits a device relayed to it (simulator,
        // default world, 32 of 10,000 seeds, e.g. 416, 709, 888).
        if !self.vouching.vouch_to_peer && !self.peer.is_office() {
            self.vouching.vouch_to_peer = self.config.peer_relays
                || !self.config.sole_office
                || !store.office_keys().map_err(store_error)?.is_empty();
        }
        if !self.vouching.vouch_to_peer {
            return Ok(Vec::new());
        }
        Ok(docs
            .iter()
            .flat_map(|(id, heads)| heads.iter().map(|head| signer.vouch(id, head)))
            .collect())
    }
}
