//! Vouchers (protocol 6, `fieldsync_node::vouch`): what an office's
//! signatures cost. Two lines:
//!
//! 1. one voucher signed and verified, timed over `n` heads on one thread,
//!    and its bytes on the wire;
//! 2. a technician's device primed with `n` work orders by the real engine
//!    (`Session` over `MemStore`, no IO), without and with vouchers (a
//!    device whose user has another device gets them): bytes per document
//!    and the office's CPU for the whole prime.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use automerge::{ActorId, ChangeHash};
use clap::Args;
use fieldsync_node::access::PeerAccess;
use fieldsync_node::import::open_jsonl;
use fieldsync_node::sync::{MemStore, Session, SessionConfig};
use fieldsync_node::vouch::{self, Signer};
use fieldsync_schemas::fixture::FixtureWorkOrder;
use fieldsync_schemas::sync_frame::Frame;
use fieldsync_schemas::{Actor, Role};

#[derive(Args)]
pub(crate) struct VouchArgs {
    /// Heads to sign and verify, and work orders to prime.
    #[arg(long, default_value_t = 10_000)]
    n: u64,
    /// The fixture (JSONL, gzip or plain).
    #[arg(long)]
    fixture: Option<PathBuf>,
}

pub(crate) fn vouch(args: &VouchArgs) -> anyhow::Result<()> {
    signatures(args.n);
    let fixture = args
        .fixture
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(crate::FIXTURE_DEFAULT));
    let plain = prime(&fixture, args.n, false)?;
    let vouched = prime(&fixture, args.n, true)?;
    println!(
        "prime {} work orders to a device: {:.0} B/doc without vouchers, {:.0} B/doc with (+{:.0} B/doc); office CPU {:.3} s without, {:.3} s with",
        args.n,
        plain.bytes as f64 / args.n as f64,
        vouched.bytes as f64 / args.n as f64,
        (vouched.bytes as f64 - plain.bytes as f64) / args.n as f64,
        plain.office_s,
        vouched.office_s,
    );
    Ok(())
}

/// Sign and verify `n` heads; print the cost of one and its bytes.
fn signatures(n: u64) {
    let signer = Signer::derive(b"bench office");
    let heads: Vec<ChangeHash> = (0..n)
        .map(|i| {
            let mut head = [0u8; 32];
            head[..8].copy_from_slice(&i.to_le_bytes());
            ChangeHash(head)
        })
        .collect();
    let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let started = Instant::now();
    let vouchers: Vec<_> = heads.iter().map(|head| signer.vouch(id, head)).collect();
    let sign_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let valid = vouchers.iter().filter(|v| vouch::is_signed(v)).count();
    let verify_s = started.elapsed().as_secs_f64();
    assert_eq!(valid, vouchers.len(), "every voucher verifies");
    let one = Frame::Vouch {
        vouchers: vec![vouchers[0].clone()],
    }
    .encode()
    .len();
    println!(
        "vouch: sign {:.1} µs, verify {:.1} µs per voucher ({n} each, one thread); {one} B on the wire for one voucher (a 36-char id, head, key, signature)",
        sign_s * 1e6 / n as f64,
        verify_s * 1e6 / n as f64,
    );
}

struct Primed {
    bytes: u64,
    office_s: f64,
}

/// An office holding `n` fixture work orders (all assigned to tech-1)
/// primes an empty device; frames move until both are idle.
fn prime(fixture: &Path, n: u64, relays: bool) -> anyhow::Result<Primed> {
    let mut office = MemStore::new([1; 16], ActorId::from(vec![1; 16]));
    let mut device = MemStore::new([2; 16], ActorId::from(vec![2; 16]));
    let reader =
        open_jsonl(fixture).with_context(|| format!("cannot open {}", fixture.display()))?;
    let who = Actor::new("op", Role::Operator);
    for line in reader.lines().take(n as usize) {
        let line: FixtureWorkOrder = serde_json::from_str(&line?)?;
        let mut new = line.into_new_work_order("2026-01-01T00:00:00Z");
        new.assignee = Some("tech-1".into());
        let id = new.id.clone().unwrap_or_default();
        office.create(&who, &id, &new, 1_000)?;
    }
    office.flush();
    let mut config = SessionConfig::new("office", true);
    config.signer = Some(Arc::new(Signer::derive(b"bench office")));
    config.peer_relays = relays;
    let tech = PeerAccess::User {
        user_id: "tech-1".into(),
        role: Role::Technician,
    };
    let mut at_office = Session::new(config, "device", tech);
    let mut at_device = Session::new(
        SessionConfig::new("device", false),
        "office",
        PeerAccess::Office,
    );
    let mut office_s = 0.0;
    let mut bytes = 0u64;
    let now_ms = 2_000;
    let started = Instant::now();
    at_office.start(&office)?;
    office_s += started.elapsed().as_secs_f64();
    at_device.start(&device)?;
    for _ in 0..1_000_000 {
        let mut moved = false;
        let started = Instant::now();
        let from_office: Vec<Vec<u8>> = std::iter::from_fn(|| at_office.poll_frame())
            .map(|f| f.encode())
            .collect();
        office_s += started.elapsed().as_secs_f64();
        for frame in from_office {
            bytes += frame.len() as u64;
            at_device.handle_bytes(now_ms, &frame, &mut device)?;
            moved = true;
        }
        let from_device: Vec<Vec<u8>> = std::iter::from_fn(|| at_device.poll_frame())
            .map(|f| f.encode())
            .collect();
        for frame in from_device {
            bytes += frame.len() as u64;
            let started = Instant::now();
            at_office.handle_bytes(now_ms, &frame, &mut office)?;
            office_s += started.elapsed().as_secs_f64();
            moved = true;
        }
        if let Some(write) = device.flush() {
            at_device.handle_write_done(now_ms, write, &mut device)?;
            moved = true;
        }
        if let Some(write) = office.flush() {
            let started = Instant::now();
            at_office.handle_write_done(now_ms, write, &mut office)?;
            office_s += started.elapsed().as_secs_f64();
            moved = true;
        }
        if !moved {
            let held = device.doc_ids().len() as u64;
            anyhow::ensure!(held == n, "the device holds {held} of {n} work orders");
            return Ok(Primed { bytes, office_s });
        }
    }
    anyhow::bail!("the prime did not settle")
}
