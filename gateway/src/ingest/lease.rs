//! One sender per ERP and client at a time: a lease, as a pure function of
//! (stored lease, sender instance, now).
//!
//! Why: an ERP site runs its sender on more than one machine for
//! availability (reference §3: "only one sender per customer site may
//! upload at a time; another takes over if it dies"). Two senders
//! interleaving messages of the same batch would corrupt it, so the
//! instance that holds the lease renews it with every message and summary;
//! another instance is refused, with the holder named, until the holder
//! has been quiet for `lease_ms`; then the next one to write takes over.
//!
//! The lease is stored with the client's batch bookkeeping
//! (`staging::ClientState`) and renewed in the same write set as the
//! message it accompanies, so a refused write changes nothing and an
//! accepted one renews the lease exactly when it is durable.

use serde::{Deserialize, Serialize};

/// The instance name of a sender that does not say
/// (`x-sender-instance` absent).
pub(crate) const DEFAULT_INSTANCE: &str = "default";
/// Bytes of an instance name, at most.
pub(crate) const INSTANCE_BYTES_MAX: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lease {
    pub(crate) holder: String,
    pub(crate) renewed_at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LeaseDecision {
    /// The holder writes again (or nobody held it): hold it from now.
    Hold,
    /// The holder was quiet too long: `from` loses it to this sender.
    TakeOver { from: String },
    /// Another instance holds it until `until_ms`.
    Refuse { holder: String, until_ms: u64 },
}

/// Check a sender instance name: 1 to 128 visible ASCII characters.
pub(crate) fn check_instance(instance: &str) -> Result<(), String> {
    let ok = !instance.is_empty()
        && instance.len() <= INSTANCE_BYTES_MAX
        && instance.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "x-sender-instance must be 1 to {INSTANCE_BYTES_MAX} visible ASCII characters"
        ))
    }
}

/// May `instance` write now?
pub(crate) fn decide(
    current: Option<&Lease>,
    instance: &str,
    now_ms: u64,
    lease_ms: u64,
) -> LeaseDecision {
    let Some(lease) = current else {
        return LeaseDecision::Hold;
    };
    if lease.holder == instance {
        return LeaseDecision::Hold;
    }
    let until_ms = lease.renewed_at_ms.saturating_add(lease_ms);
    if now_ms >= until_ms {
        LeaseDecision::TakeOver {
            from: lease.holder.clone(),
        }
    } else {
        LeaseDecision::Refuse {
            holder: lease.holder.clone(),
            until_ms,
        }
    }
}

impl LeaseDecision {
    /// The error a refused sender gets.
    pub(crate) fn refusal(&self, erp: &str, now_ms: u64) -> Option<String> {
        match self {
            LeaseDecision::Refuse { holder, until_ms } => Some(format!(
                "sender instance `{holder}` holds the upload lease for ERP `{erp}`; \
                 retry after it has been quiet for {} ms more",
                until_ms.saturating_sub(now_ms)
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_table() {
        let held = |holder: &str, at: u64| Lease {
            holder: holder.into(),
            renewed_at_ms: at,
        };
        let a = held("a", 1_000);
        let cases = [
            (None, "a", 5, LeaseDecision::Hold),
            (Some(&a), "a", 1_500, LeaseDecision::Hold),
            (Some(&a), "a", 99_999, LeaseDecision::Hold),
            (
                Some(&a),
                "b",
                1_999,
                LeaseDecision::Refuse {
                    holder: "a".into(),
                    until_ms: 2_000,
                },
            ),
            (
                Some(&a),
                "b",
                2_000,
                LeaseDecision::TakeOver { from: "a".into() },
            ),
        ];
        for (current, instance, now, expected) in cases {
            assert_eq!(
                decide(current, instance, now, 1_000),
                expected,
                "{instance}@{now}"
            );
        }
        let refusal = decide(Some(&a), "b", 1_400, 1_000).refusal("protheus", 1_400);
        assert!(refusal
            .unwrap()
            .contains("`a` holds the upload lease for ERP `protheus`"));
        // No overflow: a lease renewed near the end of time stays held.
        assert!(matches!(
            decide(Some(&held("a", u64::MAX - 5)), "b", u64::MAX - 1, 1_000),
            LeaseDecision::Refuse {
                until_ms: u64::MAX,
                ..
            }
        ));
    }

    #[test]
    fn instance_names() {
        assert!(check_instance("erp-host-1").is_ok());
        for bad in ["", "a b", "é", &"x".repeat(129)] {
            assert!(check_instance(bad).is_err(), "{bad:?}");
        }
    }
}
