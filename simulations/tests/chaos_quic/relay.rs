//! A fault-injecting UDP relay on loopback: a laptop dials the relay, the
//! relay forwards to the central from a socket of its own, and on the way
//! it drops, delays (with jitter, so datagrams reorder), duplicates, or
//! black-holes datagrams, as a bad field link would. QUIC has to cope with
//! all of it; the sync engine sees only what QUIC surfaces (a slow or dead
//! connection).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Largest datagram relayed, in bytes (QUIC stays far below).
const DATAGRAM_BYTES_MAX: usize = 65_536;
/// How long a relay thread blocks on its socket before checking its
/// delayed datagrams and its stop flag.
const POLL_MS: u64 = 2;

/// What the link does to each datagram, in both directions.
#[derive(Clone, Debug, Default)]
pub(crate) struct Faults {
    pub(crate) loss: f64,
    pub(crate) duplicate: f64,
    pub(crate) delay_ms: u64,
    pub(crate) jitter_ms: u64,
    /// Drop everything until then (a link flap).
    pub(crate) blackhole_until: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) relayed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) duplicated: AtomicU64,
}

pub(crate) struct Relay {
    pub(crate) address: SocketAddr,
    pub(crate) faults: Arc<Mutex<Faults>>,
    pub(crate) counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

type Queue = BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>;

impl Relay {
    pub(crate) fn start(target: SocketAddr, seed: u64) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("relay front socket");
        let back = UdpSocket::bind("127.0.0.1:0").expect("relay back socket");
        back.connect(target).expect("relay back socket connects");
        for socket in [&front, &back] {
            socket
                .set_read_timeout(Some(Duration::from_millis(POLL_MS)))
                .expect("read timeout");
        }
        let address = front.local_addr().expect("relay address");
        let faults = Arc::new(Mutex::new(Faults::default()));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let (front2, back2) = (
            front.try_clone().expect("clone"),
            back.try_clone().expect("clone"),
        );
        let upstream = {
            let (faults, counters, stop, client) = (
                faults.clone(),
                counters.clone(),
                stop.clone(),
                client.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                pump(
                    &mut rng,
                    &faults,
                    &counters,
                    &stop,
                    |buf| {
                        let (len, from) = front.recv_from(buf)?;
                        *client.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
                        Ok(len)
                    },
                    |bytes| {
                        let _ = back.send(bytes);
                    },
                )
            })
        };
        let downstream = {
            let (faults, counters, stop) = (faults.clone(), counters.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
                pump(
                    &mut rng,
                    &faults,
                    &counters,
                    &stop,
                    |buf| back2.recv(buf),
                    |bytes| {
                        if let Some(to) = *client.lock().unwrap_or_else(|e| e.into_inner()) {
                            let _ = front2.send_to(bytes, to);
                        }
                    },
                )
            })
        };
        Relay {
            address,
            faults,
            counters,
            stop,
            threads: vec![upstream, downstream],
        }
    }

    pub(crate) fn set(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One direction: receive, decide each datagram's fate, send when due.
fn pump(
    rng: &mut ChaCha8Rng,
    faults: &Mutex<Faults>,
    counters: &Counters,
    stop: &AtomicBool,
    mut receive: impl FnMut(&mut [u8]) -> std::io::Result<usize>,
    mut send: impl FnMut(&[u8]),
) {
    let mut queue: Queue = BinaryHeap::new();
    let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(len) = receive(&mut buf) {
            let now = Instant::now();
            let f = faults.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if f.blackhole_until.is_some_and(|until| now < until)
                || rng.random_bool(f.loss.clamp(0.0, 1.0))
            {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                let copies = if rng.random_bool(f.duplicate.clamp(0.0, 1.0)) {
                    2
                } else {
                    1
                };
                if copies == 2 {
                    counters.duplicated.fetch_add(1, Ordering::Relaxed);
                }
                for _ in 0..copies {
                    let delay = f.delay_ms + rng.random_range(0..=f.jitter_ms);
                    sequence += 1;
                    queue.push(Reverse((
                        now + Duration::from_millis(delay),
                        sequence,
                        buf[..len].to_vec(),
                    )));
                }
            }
        }
        let now = Instant::now();
        while queue.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
            let Some(Reverse((_, _, bytes))) = queue.pop() else {
                break;
            };
            counters.relayed.fetch_add(1, Ordering::Relaxed);
            send(&bytes);
        }
    }
}
