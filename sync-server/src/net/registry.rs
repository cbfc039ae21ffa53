//! Admission of client connections: the overall and per-address caps, the
//! health reserve, and eviction of idle or slow connections.
//!
//! A connection is *evictable* while it is not doing useful work: waiting
//! for (or still receiving) request headers, idle between requests, or
//! still receiving a request body. A connection whose request is being
//! handled, or that became a WebSocket, is never evicted. When a cap is
//! reached, the oldest evictable connection (overall, or from the same
//! address for the per-address cap) is closed to admit the new one; so a
//! client that sends its request at once always gets in, however many
//! slow connections an attacker holds open.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

/// How many connections may be open.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Most ordinary connections.
    pub total: usize,
    /// Most ordinary connections from one client address.
    pub per_ip: usize,
    /// Extra connections that may only ask `GET /v1/health`.
    pub health_reserve: usize,
}

/// The open connections, by id.
pub struct Registry {
    caps: Caps,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    open: HashMap<u64, Arc<Slot>>,
    per_ip: HashMap<IpAddr, usize>,
    reserved: usize,
}

/// What a new connection gets.
pub enum Admission {
    /// An ordinary connection; `evicted` is how many were closed for it.
    Admitted {
        /// The connection's ticket.
        ticket: Ticket,
        /// Connections closed to make room.
        evicted: usize,
    },
    /// Every ordinary slot is busy: this connection may only ask for
    /// `GET /v1/health`.
    HealthOnly(Ticket),
    /// Nothing free and nothing to evict: close it now.
    Refused,
}

/// The state of one connection that the registry looks at.
pub struct Slot {
    id: u64,
    ip: IpAddr,
    opened: Instant,
    health_only: bool,
    in_flight: AtomicU32,
    receiving: AtomicU32,
    upgraded: AtomicBool,
    evict: Notify,
}

impl Slot {
    fn evictable(&self) -> bool {
        !self.upgraded.load(Ordering::Acquire)
            && self.in_flight.load(Ordering::Acquire) <= self.receiving.load(Ordering::Acquire)
    }
}

impl Registry {
    /// An empty registry with these caps.
    pub fn new(caps: Caps) -> Arc<Self> {
        Arc::new(Registry {
            caps,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// The caps in force.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves counts that are still
        // consistent (every change is one statement); keep going.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admit a connection from `ip`, evicting if a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Admission {
        let mut inner = self.lock();
        let mut evicted = 0;
        if inner.per_ip.get(&ip).copied().unwrap_or(0) >= self.caps.per_ip {
            if inner.evict_oldest(|s| s.ip == ip) {
                evicted += 1;
            } else {
                return self.reserve(inner);
            }
        }
        if inner.open.len() >= self.caps.total {
            if inner.evict_oldest(|_| true) {
                evicted += 1;
            } else {
                return self.reserve(inner);
            }
        }
        let slot = inner.slot(ip, false);
        inner.open.insert(slot.id, Arc::clone(&slot));
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        Admission::Admitted {
            ticket: Ticket(Arc::new(Held {
                slot,
                registry: Arc::clone(self),
            })),
            evicted,
        }
    }

    fn reserve(self: &Arc<Self>, mut inner: MutexGuard<'_, Inner>) -> Admission {
        if inner.reserved >= self.caps.health_reserve {
            return Admission::Refused;
        }
        inner.reserved += 1;
        let slot = inner.slot(IpAddr::from([0, 0, 0, 0]), true);
        Admission::HealthOnly(Ticket(Arc::new(Held {
            slot,
            registry: Arc::clone(self),
        })))
    }

    /// Ordinary connections open now.
    pub fn open(&self) -> usize {
        self.lock().open.len()
    }

    fn release(&self, slot: &Slot) {
        let mut inner = self.lock();
        if slot.health_only {
            inner.reserved = inner.reserved.saturating_sub(1);
        } else if inner.open.remove(&slot.id).is_some() {
            inner.forget_ip(slot.ip);
        }
    }
}

impl Inner {
    fn slot(&mut self, ip: IpAddr, health_only: bool) -> Arc<Slot> {
        self.next_id += 1;
        Arc::new(Slot {
            id: self.next_id,
            ip,
            opened: Instant::now(),
            health_only,
            in_flight: AtomicU32::new(0),
            receiving: AtomicU32::new(0),
            upgraded: AtomicBool::new(false),
            evict: Notify::new(),
        })
    }

    fn forget_ip(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Close the oldest evictable connection matching `filter`; its slot is
    /// free on return.
    fn evict_oldest(&mut self, filter: impl Fn(&Slot) -> bool) -> bool {
        let victim = self
            .open
            .values()
            .filter(|s| filter(s) && s.evictable())
            .min_by_key(|s| (s.opened, s.id))
            .map(|s| s.id);
        let Some(slot) = victim.and_then(|id| self.open.remove(&id)) else {
            return false;
        };
        self.forget_ip(slot.ip);
        slot.evict.notify_one();
        true
    }
}

/// An admitted connection's claim on its slot, released when the last
/// clone is dropped (the connection task holds one; a WebSocket holds one
/// for as long as it is open).
#[derive(Clone)]
pub struct Ticket(Arc<Held>);

struct Held {
    slot: Arc<Slot>,
    registry: Arc<Registry>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.registry.release(&self.slot);
    }
}

impl Ticket {
    /// Whether this connection may only ask for `GET /v1/health`.
    pub fn health_only(&self) -> bool {
        self.0.slot.health_only
    }

    /// Resolves when the registry closed this connection for a newer one.
    pub async fn evicted(&self) {
        self.0.slot.evict.notified().await;
    }

    /// A request is being handled (until the guard is dropped).
    pub fn request(&self) -> Counted {
        Counted::new(Arc::clone(&self.0.slot), |s| &s.in_flight)
    }

    /// A request body is being received (until the guard is dropped).
    pub fn receiving(&self) -> Counted {
        Counted::new(Arc::clone(&self.0.slot), |s| &s.receiving)
    }

    /// The connection became a WebSocket: never evicted from now on.
    pub fn upgraded(&self) {
        self.0.slot.upgraded.store(true, Ordering::Release);
    }
}

/// One unit of a slot's counter, given back on drop.
pub struct Counted {
    slot: Arc<Slot>,
    counter: fn(&Slot) -> &AtomicU32,
}

impl Counted {
    fn new(slot: Arc<Slot>, counter: fn(&Slot) -> &AtomicU32) -> Self {
        counter(&slot).fetch_add(1, Ordering::AcqRel);
        Counted { slot, counter }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.counter)(&self.slot).fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future as _;

    use super::*;

    fn caps(total: usize, per_ip: usize, health_reserve: usize) -> Arc<Registry> {
        Registry::new(Caps {
            total,
            per_ip,
            health_reserve,
        })
    }

    fn ticket(a: Admission) -> Ticket {
        match a {
            Admission::Admitted { ticket, .. } => ticket,
            _ => panic!("expected an ordinary admission"),
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn idle_connections_make_room_oldest_first() {
        let reg = caps(2, 10, 0);
        let first = ticket(reg.admit(A));
        let second = ticket(reg.admit(B));
        let third = reg.admit(A);
        assert!(matches!(third, Admission::Admitted { evicted: 1, .. }));
        assert_eq!(reg.open(), 2);
        // The oldest was told to go; the second stays.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut gone = Box::pin(first.evicted());
        assert!(gone.as_mut().poll(&mut cx).is_ready());
        let mut stays = Box::pin(second.evicted());
        assert!(stays.as_mut().poll(&mut cx).is_pending());
    }

    #[test]
    fn busy_connections_are_never_evicted_and_the_reserve_is_health_only() {
        let reg = caps(1, 10, 1);
        let busy = ticket(reg.admit(A));
        let _handling = busy.request();
        let reserve = match reg.admit(B) {
            Admission::HealthOnly(t) => t,
            _ => panic!("expected the health reserve"),
        };
        assert!(reserve.health_only());
        assert!(matches!(reg.admit(B), Admission::Refused));
        drop(reserve);
        assert!(matches!(reg.admit(B), Admission::HealthOnly(_)));
    }

    #[test]
    fn a_request_still_receiving_its_body_is_evictable() {
        let reg = caps(1, 10, 0);
        let slow = ticket(reg.admit(A));
        let _req = slow.request();
        let _body = slow.receiving();
        assert!(matches!(
            reg.admit(B),
            Admission::Admitted { evicted: 1, .. }
        ));
    }

    #[test]
    fn websockets_are_kept() {
        let reg = caps(1, 10, 0);
        let ws = ticket(reg.admit(A));
        ws.upgraded();
        assert!(matches!(reg.admit(B), Admission::Refused));
    }

    #[test]
    fn the_per_address_cap_evicts_from_that_address_only() {
        let reg = caps(10, 1, 0);
        let other = ticket(reg.admit(B));
        let _busy = other.request();
        let mine = ticket(reg.admit(A));
        let newer = reg.admit(A);
        assert!(matches!(newer, Admission::Admitted { evicted: 1, .. }));
        drop(mine);
        // The slot of the evicted connection was freed once, not twice.
        assert_eq!(reg.open(), 2);
    }
}
