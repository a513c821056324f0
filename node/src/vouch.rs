//! Offices vouch, by signature, for the history of the documents they hold.
//!
//! Why: a change relayed by a technician's device (to another device of
//! its user, or to another central) used to be judged as the relay's own:
//! an office's edit relayed through a laptop broke the field rules and was
//! compensated away, and a former assignee's note relayed by the new
//! assignee broke the items' `by` rule. What matters about a change is
//! who accepted it, and the one who may accept anything is an office.
//!
//! How: an office signs the heads of a document it sends to a technician's
//! device (`Frame::Vouch`). An Automerge change hash covers its
//! dependencies' hashes, so a signature on a head covers the whole history
//! behind it, and an office holds a change only after accepting it (its
//! own, another office's, or a technician's that passed the field rules or
//! was compensated). The device stores the vouchers beside the document
//! and forwards them with the changes it relays; the receiver verifies
//! them against the office keys it learned from offices over mutual TLS
//! (`Frame::OfficeKeys`) and judges only what no voucher covers, as the
//! relay's own changes, as before.
//!
//! Decisions, where the design card says "sign every change":
//! - Only offices sign. A technician's own changes reach a peer straight
//!   from their author (judged as that peer), or from another device of
//!   the same user (judged as that user: the same rules), or through an
//!   office (vouched). So a technician's signature would decide nothing.
//! - The actor id in a change is never trusted for anything: a change is
//!   an office's because an office vouched for it, whatever actor it names.
//! - Signatures are made when a document is sent, not when a change is
//!   written: an import of 10,000 work orders signs nothing, and a central
//!   with one device per user and no other central signs nothing at all
//!   (no peer can relay). Ed25519 signatures are deterministic, so the
//!   simulator's traces stay reproducible.

use automerge::{ChangeHash, ReadDoc};
use fieldsync_schemas::sync_frame::{OfficeKey, Voucher, VOUCHER_SIGNATURE_BYTES};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

/// Vouchers a device forwards for one document at once, at most (a
/// receiver closes the session past it; protocol 6).
pub const VOUCHERS_PER_DOC_MAX: usize = 8;
/// Vouchers a device keeps per document, at most (the oldest go first).
/// More than it forwards: it forwards only those that cover what it holds
/// and no other forwarded one covers ([`covering`]).
pub const VOUCHERS_STORED_PER_DOC_MAX: usize = 16;

/// What is signed: a domain tag, then the head.
const DOMAIN: &[u8] = b"fieldsync voucher v1\0";

/// An office's signing key (Ed25519).
pub struct Signer {
    pair: Ed25519KeyPair,
    key: OfficeKey,
}

impl std::fmt::Debug for Signer {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &hex::encode(self.key))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The signer whose private key is derived from `secret` (the node's
    /// private key bytes, or a seed in tests and the simulator): the same
    /// secret gives the same key on every start, so vouchers stay valid.
    pub fn derive(secret: &[u8]) -> Signer {
        let mut hasher = Sha256::new();
        hasher.update(b"fieldsync office signing key v1\0");
        hasher.update(secret);
        let seed = hasher.finalize();
        let pair =
            Ed25519KeyPair::from_seed_unchecked(&seed).expect("any 32 bytes are an Ed25519 seed");
        let key: OfficeKey = pair
            .public_key()
            .as_ref()
            .try_into()
            .expect("an Ed25519 public key is 32 bytes");
        Signer { pair, key }
    }

    pub fn key(&self) -> OfficeKey {
        self.key
    }

    /// Our voucher for document `id` at `head`.
    pub fn vouch(&self, id: &str, head: &ChangeHash) -> Voucher {
        let signature = self.pair.sign(&message(head)).as_ref().to_vec();
        debug_assert_eq!(signature.len(), VOUCHER_SIGNATURE_BYTES);
        Voucher {
            id: id.to_string(),
            head: head.0,
            key: self.key,
            signature,
        }
    }
}

fn message(head: &ChangeHash) -> Vec<u8> {
    let mut message = Vec::with_capacity(DOMAIN.len() + head.0.len());
    message.extend_from_slice(DOMAIN);
    message.extend_from_slice(&head.0);
    message
}

/// Is `voucher` signed by its key? (Whether that key is an office's is the
/// caller's question.)
pub fn is_signed(voucher: &Voucher) -> bool {
    UnparsedPublicKey::new(&ED25519, voucher.key)
        .verify(&message(&ChangeHash(voucher.head)), &voucher.signature)
        .is_ok()
}

/// The vouchers a device keeps for one document after receiving `new`:
/// the held ones, then the new ones not held, at most
/// [`VOUCHERS_STORED_PER_DOC_MAX`], the oldest dropped first.
///
/// An office's new vouchers do not replace its old ones: they name the
/// office's heads when it sent, and the changes under them may reach the
/// device later than the vouchers (or from another peer). Until they do,
/// only an older voucher covers what the device holds; dropped, the
/// office's changes the device relays meanwhile were judged as its own
/// (simulator, `--centrals 0 --shared-laptops` seed 61). An old voucher
/// costs 168 bytes each time it is forwarded, and falls off the end.
pub fn merged(held: Vec<Voucher>, new: &[Voucher]) -> Vec<Voucher> {
    let mut kept = held;
    for voucher in new {
        if !kept.contains(voucher) {
            kept.push(voucher.clone());
        }
    }
    let excess = kept.len().saturating_sub(VOUCHERS_STORED_PER_DOC_MAX);
    kept.drain(..excess);
    kept
}

/// The vouchers worth forwarding with `doc`: one per vouched head the
/// document holds, none whose head lies under another's (a signature on a
/// head covers its whole history), the newest at most
/// [`VOUCHERS_PER_DOC_MAX`]. With the oldest of a long list dropped at the
/// wire's bound instead, a voucher that alone covered an office's change
/// was left behind (simulator, default world seed 142).
pub fn covering(doc: &automerge::Automerge, held: &[Voucher]) -> Vec<Voucher> {
    let mut present: Vec<&Voucher> = Vec::new();
    for voucher in held.iter().rev() {
        let head = ChangeHash(voucher.head);
        let new_head = !present.iter().any(|v| v.head == voucher.head);
        if new_head && doc.get_change_by_hash(&head).is_some() {
            present.push(voucher);
        }
    }
    // For each head, the changes outside its history: one walk per head,
    // not one per pair.
    let outside: Vec<std::collections::HashSet<[u8; 32]>> = present
        .iter()
        .map(|high| {
            doc.get_changes_meta(&[ChangeHash(high.head)])
                .iter()
                .map(|change| change.hash.0)
                .collect()
        })
        .collect();
    let under = |low: &Voucher, high: usize| !outside[high].contains(&low.head);
    let mut kept: Vec<Voucher> = present
        .iter()
        .filter(|v| {
            !present
                .iter()
                .enumerate()
                .any(|(i, w)| w.head != v.head && under(v, i))
        })
        .map(|v| (*v).clone())
        .take(VOUCHERS_PER_DOC_MAX)
        .collect();
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(n: u8) -> ChangeHash {
        ChangeHash([n; 32])
    }

    #[test]
    fn a_voucher_verifies_only_as_signed() {
        let office = Signer::derive(b"office one");
        assert_eq!(office.key(), Signer::derive(b"office one").key());
        assert_ne!(office.key(), Signer::derive(b"office two").key());
        let voucher = office.vouch("wo-1", &head(1));
        assert!(is_signed(&voucher));
        // Deterministic: the simulator's traces depend on it.
        assert_eq!(voucher, office.vouch("wo-1", &head(1)));
        let mut other_head = voucher.clone();
        other_head.head = [2; 32];
        assert!(!is_signed(&other_head));
        let mut other_key = voucher.clone();
        other_key.key = Signer::derive(b"office two").key();
        assert!(!is_signed(&other_key));
        let mut flipped = voucher.clone();
        flipped.signature[0] ^= 1;
        assert!(!is_signed(&flipped));
        let mut short = voucher;
        short.signature.truncate(10);
        assert!(!is_signed(&short));
    }

    #[test]
    fn a_device_forwards_only_the_vouchers_that_cover_what_it_holds() {
        use automerge::transaction::Transactable;
        use automerge::{AutoCommit, ROOT};
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "a", 1).unwrap();
        let first = doc.get_heads()[0];
        doc.put(ROOT, "a", 2).unwrap();
        let second = doc.get_heads()[0];
        let mut side = doc.fork_at(&[first]).unwrap();
        side.put(ROOT, "b", 1).unwrap();
        let concurrent = side.get_heads()[0];
        doc.merge(&mut side).unwrap();
        let (one, two) = (Signer::derive(b"1"), Signer::derive(b"2"));
        let held = vec![
            one.vouch("d", &first),
            one.vouch("d", &concurrent),
            one.vouch("d", &head(9)), // not held yet
            one.vouch("d", &second),
            two.vouch("d", &second),
        ];
        let doc = doc.document().clone();
        // `first` lies under both others; `second` once, the newest kept.
        assert_eq!(
            covering(&doc, &held),
            vec![one.vouch("d", &concurrent), two.vouch("d", &second)]
        );
        assert!(covering(&doc, &[one.vouch("d", &head(9))]).is_empty());
        // Never more than a receiver takes.
        let mut base = AutoCommit::new();
        base.put(ROOT, "n", 0).unwrap();
        let mut long = base.fork();
        let mut many = Vec::new();
        for n in 1..=12 {
            let mut branch = base.fork();
            branch.put(ROOT, "n", n).unwrap();
            many.push(one.vouch("d", &branch.get_heads()[0]));
            long.merge(&mut branch).unwrap();
        }
        assert_eq!(covering(long.document(), &many).len(), VOUCHERS_PER_DOC_MAX);
    }

    #[test]
    fn new_vouchers_join_the_held_ones_oldest_dropped_first() {
        let one = Signer::derive(b"1");
        let two = Signer::derive(b"2");
        let held = vec![one.vouch("d", &head(1)), two.vouch("d", &head(2))];
        let kept = merged(held, &[one.vouch("d", &head(3)), one.vouch("d", &head(4))]);
        // The office's older voucher stays: head 1 may be all the device
        // holds of it until heads 3 and 4 arrive.
        assert_eq!(
            kept,
            vec![
                one.vouch("d", &head(1)),
                two.vouch("d", &head(2)),
                one.vouch("d", &head(3)),
                one.vouch("d", &head(4))
            ]
        );
        // The same again changes nothing.
        assert_eq!(merged(kept.clone(), &kept[1..]), kept);
        // Bounded, newest kept.
        let many: Vec<Voucher> = (0..20)
            .map(|n| Signer::derive(&[n]).vouch("d", &head(n)))
            .collect();
        let kept = merged(Vec::new(), &many);
        assert_eq!(kept.len(), VOUCHERS_STORED_PER_DOC_MAX);
        assert_eq!(kept.first(), many.get(20 - VOUCHERS_STORED_PER_DOC_MAX));
        assert_eq!(kept.last(), many.last());
        let kept = merged(kept, &[one.vouch("d", &head(99))]);
        assert_eq!(kept.last(), Some(&one.vouch("d", &head(99))));
        assert_eq!(kept.len(), VOUCHERS_STORED_PER_DOC_MAX);
    }
}
