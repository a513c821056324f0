//! The trace: one line per event, in order.
//!
//! Why lines: a failure is debugged by reading what happened just before
//! it, and determinism is proved by comparing two runs byte for byte. Only
//! the tail is kept by default (a sweep runs millions of events), plus a
//! SHA-256 of every line, so two runs can still be compared cheaply.

use std::collections::VecDeque;

use sha2::{Digest, Sha256};

pub(crate) struct Trace {
    tail: VecDeque<String>,
    tail_max: usize,
    full: Option<Vec<String>>,
    digest: Sha256,
    lines: u64,
}

impl Trace {
    pub(crate) fn new(tail_max: usize, keep_all: bool) -> Trace {
        Trace {
            tail: VecDeque::with_capacity(tail_max + 1),
            tail_max,
            full: keep_all.then(Vec::new),
            digest: Sha256::new(),
            lines: 0,
        }
    }

    pub(crate) fn push(&mut self, step: u64, now_ms: u64, text: &str) {
        let line = format!("{step:>7} {now_ms:>10}ms  {text}");
        self.digest.update(line.as_bytes());
        self.digest.update(b"\n");
        self.lines += 1;
        if let Some(full) = &mut self.full {
            full.push(line.clone());
        }
        if self.tail_max > 0 {
            if self.tail.len() == self.tail_max {
                self.tail.pop_front();
            }
            self.tail.push_back(line);
        }
    }

    pub(crate) fn lines(&self) -> u64 {
        self.lines
    }

    pub(crate) fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    pub(crate) fn take_full(&mut self) -> Option<Vec<String>> {
        self.full.take()
    }

    pub(crate) fn digest_hex(&self) -> String {
        hex::encode(self.digest.clone().finalize())
    }
}
