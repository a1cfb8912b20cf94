//! Who may hold one of the listener's handshake slots, and whom to drop when a
//! newcomer needs one. Pure bookkeeping, no I/O or clock, so that every rule is
//! unit-tested; the listener does the closing.
//!
//! Anyone who can reach the port can open connections, and nothing is known about a
//! connection until TLS has checked its certificate against the pin. So the rules
//! depend only on what a connection has done so far, never on who it claims to be:
//!
//! - **A newcomer always gets a slot.** When the table is full, or the newcomer's
//!   address already holds [`Limits::per_address`] unauthenticated handshakes, an
//!   older unauthenticated handshake is shed instead. Refusing newcomers, as a plain
//!   semaphore does, let 160 idle connections that were simply reopened when they
//!   timed out keep every slot for good. With shedding, a crowd can only push itself
//!   out, and a newcomer that finishes its handshake promptly gets in: the real peer
//!   needs one round trip.
//! - **The one shed has got least far, and is the oldest at that stage.** A connection
//!   still without a complete ClientHello goes before one whose TLS handshake is under
//!   way. A real client sends its ClientHello in its first packet, so the connection
//!   that has said nothing for longest is the likeliest to be stalling on purpose, and
//!   it is the nearest to its own deadline anyway. A random victim, in the spirit of
//!   OpenSSH's MaxStartups random early drop, would also defeat the crowd. But any
//!   newcomer could then hit the real peer in the moment between its accept and its
//!   first read, while it still counts as silent; oldest-first never picks it then,
//!   because it is the newest.
//! - **Addresses are counted by what one party controls.** IPv4 by address, IPv6 by
//!   its /64 prefix: a single IPv6 subnet has 2^64 addresses. IPv4-mapped IPv6
//!   addresses (a dual-stack listener) count as their IPv4 address.
//! - **An authenticated handshake is never shed.** Once the pin verifier has accepted
//!   the certificate, only the greeting remains. Such a handshake no longer counts
//!   against its address.
//! - **Nor is one that knocked.** A ClientHello that carries the pinned peer's knock
//!   ([`crate::link::knock`]) is checked with one HMAC, before any public-key work.
//!   Strangers cannot knock, so the crowd can no longer shed the pinned peer in the
//!   round trip its handshake takes, however long that is. A newcomer is refused
//!   only when every slot holds a handshake that knocked or authenticated.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use thiserror::Error;

use crate::link::handshake::Stage;

/// The table's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Handshakes in progress at once, authenticated or not.
    pub slots: usize,
    /// Unauthenticated handshakes in progress from one [`Source`].
    pub per_address: usize,
}

/// One admitted handshake. Ids only grow, so their order is the order of arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId(u64);

/// Where a connection comes from, as far as per-address limits are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6Prefix(u64),
}

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => Source::V6Prefix((v6.to_bits() >> 64) as u64),
        }
    }
}

/// Why a pending handshake lost its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// Its address already held the most unauthenticated handshakes allowed.
    AddressFull,
    /// Every slot was taken.
    TableFull,
}

/// A pending handshake dropped to make room for a newcomer. Its `Display` is the
/// reason a user reads in the `Rejected` line.
#[derive(Debug)]
pub struct Shed<H> {
    pub addr: SocketAddr,
    /// How far it had got.
    pub stage: Stage,
    pub why: ShedReason,
    limits: Limits,
    /// What the caller attached to stop it (the listener's task handle).
    pub handle: Option<H>,
}

impl<H> fmt::Display for Shed<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how_far = match self.stage {
            Stage::AwaitingClientHello => "had not sent a complete ClientHello",
            Stage::Tls | Stage::Knocked | Stage::Authenticated => {
                "had not finished its TLS handshake"
            }
        };
        match self.why {
            ShedReason::AddressFull => write!(
                f,
                "dropped for a newer connection from the same address (at most {} \
                 unauthenticated handshakes per address); it {how_far}",
                self.limits.per_address
            ),
            ShedReason::TableFull => write!(
                f,
                "dropped for a newer connection (at most {} handshakes in progress); it {how_far}",
                self.limits.slots
            ),
        }
    }
}

/// The newcomer gets no slot: every one holds a handshake that knocked or
/// authenticated.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("all {slots} handshake slots hold connections that knocked or authenticated")]
pub struct Full {
    pub slots: usize,
}

/// A newcomer's slot, and whoever was shed to make room for it.
#[derive(Debug)]
pub struct Admitted<H> {
    pub id: SlotId,
    pub shed: Option<Shed<H>>,
}

#[derive(Debug)]
struct Pending<H> {
    addr: SocketAddr,
    source: Source,
    stage: Stage,
    handle: Option<H>,
}

/// The handshakes in progress at one listener. `H` is whatever the caller needs to
/// stop a shed handshake; it is handed back in [`Shed`].
#[derive(Debug)]
pub struct Admission<H> {
    limits: Limits,
    next_id: u64,
    /// By arrival, oldest first; at most `limits.slots` entries.
    pending: BTreeMap<SlotId, Pending<H>>,
    /// Unauthenticated entries per source; sources with none are removed.
    unauthenticated: HashMap<Source, usize>,
}

impl<H> Admission<H> {
    /// An empty table. Both limits must be at least 1.
    pub fn new(limits: Limits) -> Self {
        assert!(limits.slots >= 1 && limits.per_address >= 1, "{limits:?}");
        Admission {
            limits,
            next_id: 0,
            pending: BTreeMap::new(),
            unauthenticated: HashMap::new(),
        }
    }

    /// Gives a connection from `addr` a slot, shedding an older unauthenticated
    /// handshake if its address or the table is full.
    pub fn admit(&mut self, addr: SocketAddr) -> Result<Admitted<H>, Full> {
        let source = Source::of(addr.ip());
        let from_source = self.unauthenticated.get(&source).copied().unwrap_or(0);
        let shed = match (from_source >= self.limits.per_address)
            .then(|| self.shed(Some(source), ShedReason::AddressFull))
            .flatten()
        {
            Some(shed) => Some(shed),
            None if self.pending.len() >= self.limits.slots => {
                let slots = self.limits.slots;
                Some(
                    self.shed(None, ShedReason::TableFull)
                        .ok_or(Full { slots })?,
                )
            }
            None => None,
        };
        let id = SlotId(self.next_id);
        self.next_id += 1;
        self.pending.insert(
            id,
            Pending {
                addr,
                source,
                stage: Stage::AwaitingClientHello,
                handle: None,
            },
        );
        *self.unauthenticated.entry(source).or_insert(0) += 1;
        Ok(Admitted { id, shed })
    }

    /// Keeps `handle` with the handshake, to be handed back if it is shed. Does
    /// nothing if the handshake has already ended.
    pub fn attach(&mut self, id: SlotId, handle: H) {
        if let Some(pending) = self.pending.get_mut(&id) {
            pending.handle = Some(handle);
        }
    }

    /// Records that handshake `id` has reached `stage`. False if it was shed in the
    /// meantime: it must stop, its slot belongs to someone else.
    pub fn advance(&mut self, id: SlotId, stage: Stage) -> bool {
        let Some(pending) = self.pending.get_mut(&id) else {
            return false;
        };
        if stage == Stage::Authenticated && pending.stage != Stage::Authenticated {
            uncount(&mut self.unauthenticated, pending.source);
        }
        pending.stage = pending.stage.max(stage);
        true
    }

    /// Frees the slot of a handshake that ended, however it ended. Ids are never
    /// reused, so releasing one that was shed is harmless.
    pub fn release(&mut self, id: SlotId) {
        self.remove(id);
    }

    /// Handshakes in progress.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Unauthenticated handshakes in progress from the source of `ip`.
    pub fn unauthenticated_from(&self, ip: IpAddr) -> usize {
        self.unauthenticated
            .get(&Source::of(ip))
            .copied()
            .unwrap_or(0)
    }

    /// Removes the least advanced, then oldest, handshake that has neither knocked
    /// nor authenticated (from `only` if given): a newcomer has done neither yet.
    fn shed(&mut self, only: Option<Source>, why: ShedReason) -> Option<Shed<H>> {
        let victim = self
            .pending
            .iter()
            .filter(|(_, p)| p.stage < Stage::Knocked)
            .filter(|(_, p)| only.is_none_or(|source| p.source == source))
            .min_by_key(|(id, p)| (p.stage, **id))
            .map(|(id, _)| *id)?;
        let pending = self.remove(victim)?;
        Some(Shed {
            addr: pending.addr,
            stage: pending.stage,
            why,
            limits: self.limits,
            handle: pending.handle,
        })
    }

    fn remove(&mut self, id: SlotId) -> Option<Pending<H>> {
        let pending = self.pending.remove(&id)?;
        if pending.stage != Stage::Authenticated {
            uncount(&mut self.unauthenticated, pending.source);
        }
        Some(pending)
    }
}

fn uncount(counts: &mut HashMap<Source, usize>, source: Source) {
    if let Some(count) = counts.get_mut(&source) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        slots: 4,
        per_address: 2,
    };

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn admit(table: &mut Admission<&'static str>, from: &str, name: &'static str) -> SlotId {
        let admitted = table.admit(addr(from)).unwrap();
        table.attach(admitted.id, name);
        admitted.id
    }

    /// Admits a newcomer that must shed someone; returns the shed one's handle.
    fn shed_by(table: &mut Admission<&'static str>, from: &str) -> (&'static str, ShedReason) {
        let admitted = table.admit(addr(from)).unwrap();
        let shed = admitted.shed.expect("someone is shed");
        (shed.handle.unwrap(), shed.why)
    }

    #[test]
    fn admits_without_shedding_while_there_is_room() {
        let mut table = Admission::<&str>::new(LIMITS);
        for i in 1..=4 {
            let admitted = table.admit(addr(&format!("10.0.0.{i}:1000"))).unwrap();
            assert!(admitted.shed.is_none());
        }
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn a_full_table_sheds_the_oldest_handshake_still_without_a_client_hello() {
        let mut table = Admission::new(LIMITS);
        let a = admit(&mut table, "10.0.0.1:1", "a");
        admit(&mut table, "10.0.0.2:1", "b");
        admit(&mut table, "10.0.0.3:1", "c");
        admit(&mut table, "10.0.0.4:1", "d");
        // a is oldest but already in TLS; b is the oldest still silent.
        assert!(table.advance(a, Stage::Tls));
        assert_eq!(
            shed_by(&mut table, "10.0.0.5:1"),
            ("b", ShedReason::TableFull)
        );
        assert_eq!(
            shed_by(&mut table, "10.0.0.6:1"),
            ("c", ShedReason::TableFull)
        );
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn handshakes_in_tls_are_shed_only_when_none_is_silent_and_then_oldest_first() {
        let mut table = Admission::new(LIMITS);
        for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            let id = admit(&mut table, &format!("10.0.0.{}:1", i + 1), name);
            assert!(table.advance(id, Stage::Tls));
        }
        let e = table.admit(addr("10.0.0.9:1")).unwrap();
        assert_eq!(e.shed.unwrap().handle, Some("a"));
        // The newcomer e is silent, so it goes before b, c and d.
        table.attach(e.id, "e");
        assert_eq!(shed_by(&mut table, "10.0.0.10:1").0, "e");
    }

    #[test]
    fn an_authenticated_handshake_is_never_shed() {
        let mut table = Admission::new(LIMITS);
        let peer = admit(&mut table, "10.0.0.1:1", "peer");
        assert!(table.advance(peer, Stage::Tls));
        assert!(table.advance(peer, Stage::Authenticated));
        for i in 0..100 {
            let admitted = table.admit(addr(&format!("10.1.0.{}:1", i % 250))).unwrap();
            assert_ne!(admitted.shed.and_then(|shed| shed.handle), Some("peer"));
        }
        assert!(table.advance(peer, Stage::Authenticated), "still admitted");
    }

    #[test]
    fn a_knocked_handshake_is_shed_by_no_stranger_however_many_follow() {
        let mut table = Admission::new(LIMITS);
        let peer = admit(&mut table, "10.0.0.1:1", "peer");
        assert!(table.advance(peer, Stage::Knocked));
        for i in 0..1000 {
            let from = format!("10.2.{}.{}:1", i / 250, i % 250);
            let admitted = table.admit(addr(&from)).unwrap();
            assert_ne!(admitted.shed.and_then(|shed| shed.handle), Some("peer"));
            table.attach(admitted.id, "stranger");
            if i % 2 == 0 {
                assert!(table.advance(admitted.id, Stage::Tls));
            }
        }
        assert!(table.advance(peer, Stage::Authenticated), "still admitted");
    }

    #[test]
    fn an_address_whose_handshakes_all_knocked_sheds_no_one_while_there_is_room() {
        let mut table = Admission::new(Limits {
            slots: 4,
            per_address: 1,
        });
        let peer = admit(&mut table, "10.0.0.1:1", "peer");
        assert!(table.advance(peer, Stage::Knocked));
        let again = table.admit(addr("10.0.0.1:2")).unwrap();
        assert!(again.shed.is_none());
        table.attach(again.id, "again");
        assert_eq!(
            shed_by(&mut table, "10.0.0.1:3"),
            ("again", ShedReason::AddressFull)
        );
    }

    #[test]
    fn a_newcomer_is_refused_only_when_every_slot_has_knocked_or_authenticated() {
        let mut table = Admission::<()>::new(LIMITS);
        for i in 1..=4 {
            let id = table.admit(addr(&format!("10.0.0.{i}:1"))).unwrap().id;
            let stage = if i % 2 == 0 {
                Stage::Knocked
            } else {
                Stage::Authenticated
            };
            assert!(table.advance(id, stage));
        }
        assert_eq!(
            table.admit(addr("10.0.0.9:1")).unwrap_err(),
            Full { slots: 4 }
        );
    }

    #[test]
    fn an_address_at_its_limit_sheds_its_own_oldest_handshake_and_no_one_else_s() {
        let mut table = Admission::new(Limits {
            slots: 10,
            per_address: 2,
        });
        admit(&mut table, "10.0.0.9:1", "other");
        admit(&mut table, "10.0.0.1:1", "first");
        let second = admit(&mut table, "10.0.0.1:2", "second");
        assert!(table.advance(second, Stage::Tls));
        assert_eq!(
            shed_by(&mut table, "10.0.0.1:3"),
            ("first", ShedReason::AddressFull)
        );
        assert_eq!(table.unauthenticated_from("10.0.0.1".parse().unwrap()), 2);
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn authenticated_handshakes_do_not_count_against_their_address() {
        let mut table = Admission::new(Limits {
            slots: 10,
            per_address: 2,
        });
        let peer = admit(&mut table, "10.0.0.1:1", "peer");
        assert!(table.advance(peer, Stage::Authenticated));
        admit(&mut table, "10.0.0.1:2", "a");
        let b = table.admit(addr("10.0.0.1:3")).unwrap();
        assert!(b.shed.is_none(), "the peer's slot does not count");
        assert_eq!(table.unauthenticated_from("10.0.0.1".parse().unwrap()), 2);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_bit_prefix() {
        let mut table = Admission::new(Limits {
            slots: 10,
            per_address: 2,
        });
        admit(&mut table, "[2001:db8:0:1::1]:1", "a");
        admit(&mut table, "[2001:db8:0:1::2]:1", "b");
        admit(&mut table, "[2001:db8:0:2::1]:1", "other subnet");
        assert_eq!(
            shed_by(&mut table, "[2001:db8:0:1:ffff::9]:1"),
            ("a", ShedReason::AddressFull)
        );
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_their_ipv4_address() {
        assert_eq!(
            Source::of("::ffff:10.0.0.1".parse().unwrap()),
            Source::of("10.0.0.1".parse().unwrap())
        );
        assert_ne!(
            Source::of("10.0.0.1".parse().unwrap()),
            Source::of("10.0.0.2".parse().unwrap())
        );
    }

    #[test]
    fn a_shed_handshake_cannot_advance_and_its_late_release_changes_nothing() {
        let mut table = Admission::new(Limits {
            slots: 1,
            per_address: 1,
        });
        let old = admit(&mut table, "10.0.0.1:1", "old");
        let new = table.admit(addr("10.0.0.2:1")).unwrap();
        assert_eq!(new.shed.unwrap().handle, Some("old"));
        assert!(!table.advance(old, Stage::Tls));
        table.release(old);
        assert_eq!(table.len(), 1);
        assert!(table.advance(new.id, Stage::Tls));
        table.release(new.id);
        assert!(table.is_empty());
        assert_eq!(table.unauthenticated_from("10.0.0.2".parse().unwrap()), 0);
    }

    #[test]
    fn counts_return_to_zero_whatever_the_order_of_events() {
        let mut table = Admission::<u32>::new(Limits {
            slots: 8,
            per_address: 3,
        });
        let mut live = Vec::new();
        for step in 0..500u32 {
            let from = addr(&format!("10.0.0.{}:{}", step % 5, step));
            if let Ok(admitted) = table.admit(from) {
                live.push(admitted.id);
            }
            let pick = (step as usize * 7) % live.len().max(1);
            if let Some(&id) = live.get(pick) {
                match step % 4 {
                    0 => table.release(id),
                    1 => {
                        table.advance(id, Stage::Tls);
                    }
                    2 => {
                        table.advance(id, Stage::Authenticated);
                    }
                    _ => {}
                }
            }
            assert!(table.len() <= 8);
            let counted: usize = table.unauthenticated.values().sum();
            let unauthenticated = table
                .pending
                .values()
                .filter(|p| p.stage != Stage::Authenticated)
                .count();
            assert_eq!(counted, unauthenticated);
            assert!(
                table
                    .unauthenticated
                    .values()
                    .all(|&n| (1..=3).contains(&n))
            );
        }
        for id in live {
            table.release(id);
        }
        assert!(table.is_empty());
        assert!(table.unauthenticated.is_empty());
    }

    #[test]
    fn the_reason_says_what_the_limit_was_and_how_far_the_handshake_got() {
        let mut table = Admission::<()>::new(Limits {
            slots: 1,
            per_address: 1,
        });
        table.admit(addr("10.0.0.1:1")).unwrap();
        let shed = table.admit(addr("10.0.0.1:2")).unwrap().shed.unwrap();
        let text = shed.to_string();
        assert!(text.contains("at most 1 unauthenticated"), "{text}");
        assert!(text.contains("ClientHello"), "{text}");
    }
}
