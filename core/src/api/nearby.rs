//! Edge sync from the app: two member devices of one record sync directly,
//! with no relay and no internet (the core's [`crate::nearby`]; the CLI's
//! `satchel nearby listen | sync | discover`).
//!
//! - [`HealthRecord::start_nearby_listen`] binds a TCP listener and returns a
//!   [`NearbyListener`]: the app shows its [`NearbyListener::code`] (text or
//!   a QR code it draws), then awaits [`NearbyListener::serve`], which serves
//!   until one session succeeds. The record stays usable while it waits: it
//!   is locked only while a session runs.
//! - [`HealthRecord::nearby_sync`]: one direct round with the device that
//!   showed a pairing code.
//! - [`HealthRecord::nearby_discover`]: members' devices advertising on the
//!   local network (mDNS), and [`HealthRecord::nearby_sync_with`] one of them.
//! - [`HealthRecord::sync_over_stream`]: one direct round over a byte stream
//!   the app connected itself ([`ByteStream`]: Bluetooth, Multipeer, Wi-Fi
//!   Aware), with the same Noise channel and the same membership checks.
//!
//! Every session runs the core's [`crate::nearby::session::run`]: who may
//! take part comes from this device's access log, every change received
//! goes through the shared acceptance rule.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::{Result, SatchelError};
use super::record::{lock, HealthRecord, Inner};
use super::types::{parse_identity_id, DirectSyncReport, NearbyDeviceInfo};
use crate::nearby::channel::Channel;
use crate::nearby::discovery::{self, discovery_key_for, Advertiser, DeviceAdvert};
use crate::nearby::net::{connect, connect_to, local_address, serve_connection, DEFAULT_STALL};
use crate::nearby::pairing::PairingCode;
use crate::nearby::session::{self, Pairing, SessionError};

/// Longest [`HealthRecord::nearby_discover`] browse, in milliseconds.
pub const MAX_DISCOVER_MS: u64 = 600_000;
/// How often a waiting listener checks for a connection or a cancel.
const POLL: Duration = Duration::from_millis(10);
/// The most a [`ByteStream`] read is asked for, and how much written data
/// is gathered before it is handed to the app's stream.
const CHUNK_BYTES: u32 = 64 * 1024;
const CHUNK: usize = CHUNK_BYTES as usize;

/// A connected byte stream of the app's (a Bluetooth L2CAP channel, a
/// Multipeer stream, a Wi-Fi Aware socket) for
/// [`HealthRecord::sync_over_stream`]. The library runs its encrypted,
/// authenticated channel over it: the stream itself need not be secure.
///
/// Calls come from a library thread and may block. Throw (any exception;
/// `SatchelException.Offline` with a reason is clearest) when the link
/// fails; give reads an idle timeout (e.g. 10 s) so a vanished peer ends
/// the sync instead of stalling it.
#[uniffi::export(with_foreign)]
pub trait ByteStream: Send + Sync {
    /// Block until bytes arrive and return between 1 and `max` of them; an
    /// empty result means the other side closed the stream.
    fn read(&self, max: u32) -> std::result::Result<Vec<u8>, SatchelError>;
    /// Write all of `bytes` (and send them on: the library writes a whole
    /// message before it waits for the answer).
    fn write(&self, bytes: Vec<u8>) -> std::result::Result<(), SatchelError>;
}

/// The app's [`ByteStream`] as `std::io::Read + Write`: reads are asked for
/// in chunks and kept, writes are gathered and handed over before every
/// read and on flush. The first error the app's stream threw is kept in
/// `failure` (io errors carry no text).
struct ForeignStream {
    stream: Arc<dyn ByteStream>,
    incoming: Vec<u8>,
    read_at: usize,
    outgoing: Vec<u8>,
    failure: Arc<Mutex<Option<String>>>,
}

impl ForeignStream {
    fn new(stream: Arc<dyn ByteStream>, failure: Arc<Mutex<Option<String>>>) -> Self {
        ForeignStream {
            stream,
            incoming: Vec::new(),
            read_at: 0,
            outgoing: Vec::new(),
            failure,
        }
    }

    /// Remember what the app's stream said (the first failure only).
    fn fail(&self, reason: String) -> io::Error {
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(reason);
        }
        io::Error::other("the platform transport failed")
    }

    fn push(&mut self) -> io::Result<()> {
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.outgoing);
        self.stream
            .write(bytes)
            .map_err(|e| self.fail(transport_reason(e)))
    }
}

/// The app's own words for a stream failure.
fn transport_reason(e: SatchelError) -> String {
    match e {
        SatchelError::Offline { reason }
        | SatchelError::Keystore { reason }
        | SatchelError::Relay { reason }
        | SatchelError::Storage { reason }
        | SatchelError::NotFound { reason }
        | SatchelError::InvalidInput { reason }
        | SatchelError::NotAllowed { reason } => reason,
        SatchelError::WrongKey => e.to_string(),
    }
}

impl Read for ForeignStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // The peer answers only what it has been sent.
        self.push()?;
        if self.read_at == self.incoming.len() {
            let got = self
                .stream
                .read(CHUNK_BYTES)
                .map_err(|e| self.fail(transport_reason(e)))?;
            if got.len() > CHUNK {
                return Err(self.fail(format!(
                    "the stream returned {} bytes when asked for at most {CHUNK}",
                    got.len()
                )));
            }
            self.incoming = got;
            self.read_at = 0;
            if self.incoming.is_empty() {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.incoming.len() - self.read_at);
        buf[..n].copy_from_slice(&self.incoming[self.read_at..self.read_at + n]);
        self.read_at += n;
        Ok(n)
    }
}

impl Write for ForeignStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        if self.outgoing.len() >= CHUNK {
            self.push()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push()
    }
}

/// A session's error, naming the app's stream failure when that is what
/// broke the channel.
fn stream_error(e: SessionError, failure: &Mutex<Option<String>>) -> SatchelError {
    if let SessionError::Channel(_) = e {
        if let Some(reason) = failure.lock().ok().and_then(|mut f| f.take()) {
            return SatchelError::Offline {
                reason: format!("direct sync: the platform transport failed: {reason}"),
            };
        }
    }
    e.into()
}

/// `"ip"` or `"ip:port"` (IPv6 in brackets with a port).
fn parse_bind(text: &str) -> Result<SocketAddr> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        .map_err(|_| {
            SatchelError::invalid("not an address to listen on (an IP address, or address:port)")
        })
}

fn deadline_after(timeout_ms: u64) -> Result<Instant> {
    Instant::now()
        .checked_add(Duration::from_millis(timeout_ms))
        .ok_or_else(|| SatchelError::invalid("the timeout is too long"))
}

/// Sets a flag when dropped while armed: an abandoned `serve` (the app
/// cancelled the coroutine or task awaiting it) stops the listener.
struct CancelOnDrop {
    flag: Arc<AtomicBool>,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

/// What a [`NearbyListener`] shares with the thread serving it.
struct ListenState {
    inner: Arc<Mutex<Inner>>,
    listener: TcpListener,
    code: PairingCode,
    pairing: Pairing,
    advertiser: Mutex<Option<Advertiser>>,
    /// Set by `cancel` (or an abandoned `serve`): serving stops.
    cancelled: Arc<AtomicBool>,
    /// Set once a session succeeded: the code's token is used up.
    served: AtomicBool,
    /// Held while a `serve` runs (one at a time).
    serving: Mutex<()>,
}

impl ListenState {
    fn stop_advertising(&self) -> Result<()> {
        let advertiser = self
            .advertiser
            .lock()
            .map_err(|_| SatchelError::storage("the listener's advert state was poisoned"))?
            .take();
        match advertiser {
            Some(a) => Ok(a.stop()?),
            None => Ok(()),
        }
    }

    /// Re-advertise under the new hour's names when the hour changes.
    fn refresh_advert(&self) -> Result<()> {
        let mut advertiser = self
            .advertiser
            .lock()
            .map_err(|_| SatchelError::storage("the listener's advert state was poisoned"))?;
        if let Some(a) = advertiser.as_mut() {
            a.refresh(super::now_ms())?;
        }
        Ok(())
    }

    fn serve(&self, timeout_ms: u64) -> Result<DirectSyncReport> {
        let deadline = deadline_after(timeout_ms)?;
        let _serving = self
            .serving
            .try_lock()
            .map_err(|_| SatchelError::invalid("this listener is already serving"))?;
        if self.served.load(Ordering::SeqCst) {
            return Err(SatchelError::invalid(
                "this listener already served a sync (its code is used up): start a new one",
            ));
        }
        self.listener
            .set_nonblocking(true)
            .map_err(|e| listener_failed(&e))?;
        let mut last_failure: Option<SatchelError> = None;
        while Instant::now() < deadline {
            if self.cancelled.load(Ordering::SeqCst) {
                return Err(SatchelError::Offline {
                    reason: "direct sync: listening was cancelled (nothing was changed)".into(),
                });
            }
            self.refresh_advert()?;
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(POLL);
                    continue;
                }
                Err(e) => return Err(listener_failed(&e)),
            };
            // The record is locked for the session only, not while waiting.
            let result = {
                let mut guard = lock(&self.inner)?;
                serve_connection(
                    &mut guard.profile,
                    stream,
                    self.pairing,
                    DEFAULT_STALL,
                    super::now_ms(),
                )
            };
            match result {
                Ok(report) => {
                    self.served.store(true, Ordering::SeqCst);
                    // The sync happened; an advert that fails to withdraw
                    // expires by itself (mDNS TTL), so it must not hide the report.
                    if let Err(e) = self.stop_advertising() {
                        tracing::warn!(error = %e, "the local-network advert could not be withdrawn");
                    }
                    return Ok(DirectSyncReport::from(&report));
                }
                Err(e) => {
                    tracing::info!(error = %e, "a direct-sync connection failed (still listening)");
                    last_failure = Some(e.into());
                }
            }
        }
        Err(last_failure.unwrap_or_else(|| SatchelError::Offline {
            reason: format!(
                "direct sync: no device synced within {} (nothing was changed)",
                duration_text(timeout_ms)
            ),
        }))
    }
}

/// `"5 s"`, or `"250 ms"` when not whole seconds.
fn duration_text(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

fn listener_failed(e: &io::Error) -> SatchelError {
    SatchelError::Offline {
        reason: format!("direct sync: the listener failed ({})", e.kind()),
    }
}

/// A direct-sync listener: show its [`Self::code`], then await
/// [`Self::serve`]. Dropping it (or [`Self::cancel`]) stops listening and
/// withdraws its local-network advert.
#[derive(uniffi::Object)]
pub struct NearbyListener {
    state: Arc<ListenState>,
}

impl std::fmt::Debug for NearbyListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NearbyListener(..)")
    }
}

#[uniffi::export]
impl NearbyListener {
    /// The pairing code to show (text; draw it as a QR code too). It names
    /// this device, where it listens and a one-time token: the device that
    /// scans it passes it to [`HealthRecord::nearby_sync`].
    pub fn code(&self) -> String {
        self.state.code.to_string()
    }

    /// The TCP port listened on.
    pub fn port(&self) -> u16 {
        self.state.code.addr.port()
    }

    /// Serve until one session succeeds (its report) or `timeout_ms`
    /// passes. Connections that fail (a stranger, a wrong code, a dropped
    /// link) are skipped; the last one's error is returned if none
    /// succeeded, else `Offline` (nobody synced). The record stays usable
    /// while waiting; it is locked while a session runs. Cancelling the
    /// awaiting coroutine or task cancels the listener.
    pub async fn serve(&self, timeout_ms: u64) -> Result<DirectSyncReport> {
        let state = Arc::clone(&self.state);
        let mut guard = CancelOnDrop {
            flag: Arc::clone(&self.state.cancelled),
            armed: true,
        };
        let result = super::in_background(move |_| state.serve(timeout_ms)).await;
        guard.armed = false;
        result
    }

    /// Stop listening for good: a `serve` waiting for a connection returns
    /// `Offline` (a session already running finishes), and the
    /// local-network advert is withdrawn.
    pub fn cancel(&self) -> Result<()> {
        self.state.cancelled.store(true, Ordering::SeqCst);
        self.state.stop_advertising()
    }
}

#[uniffi::export]
impl HealthRecord {
    /// Start a direct-sync listener (nothing is served until
    /// [`NearbyListener::serve`]). `bind_address`: the address to listen on
    /// and to put in the pairing code, `"ip"` or `"ip:port"`; null listens
    /// on every interface on a free port, and the code names this device's
    /// address on its default route (127.0.0.1 without one). `advertise`:
    /// also advertise on the local network (mDNS, a name only members
    /// recognise) and serve members' devices that find it without the code.
    pub fn start_nearby_listen(
        &self,
        bind_address: Option<String>,
        advertise: bool,
    ) -> Result<Arc<NearbyListener>> {
        let bind = match bind_address.as_deref() {
            Some(text) => parse_bind(text)?,
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let listener = TcpListener::bind(bind).map_err(|e| SatchelError::Offline {
            reason: format!("direct sync: cannot listen ({})", e.kind()),
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| listener_failed(&e))?
            .port();
        let address = if bind.ip().is_unspecified() {
            local_address()
        } else {
            bind.ip()
        };
        let (device, record, creator, name) = {
            let guard = lock(&self.inner)?;
            let p = &guard.profile;
            (
                p.device_id(),
                p.record_id(),
                p.creator(),
                p.identity_card().display_name.clone(),
            )
        };
        let code = PairingCode::new(SocketAddr::new(address, port), device)?;
        let advertiser = if advertise {
            let key = discovery_key_for(&record, &creator)
                .map_err(|_| SatchelError::storage("cannot derive the record's discovery key"))?;
            let me = DeviceAdvert {
                identity: device,
                name,
            };
            Some(Advertiser::start(&[(key, me)], port, super::now_ms())?)
        } else {
            None
        };
        Ok(Arc::new(NearbyListener {
            state: Arc::new(ListenState {
                inner: Arc::clone(&self.inner),
                listener,
                pairing: Pairing {
                    // Advertised: members' devices find it without the code.
                    token: (!advertise).then_some(code.token),
                    device: None,
                },
                code,
                advertiser: Mutex::new(advertiser),
                cancelled: Arc::new(AtomicBool::new(false)),
                served: AtomicBool::new(false),
                serving: Mutex::new(()),
            }),
        }))
    }

    /// One direct sync with the device that shows `code` (its
    /// [`NearbyListener::code`]): only that device can answer, and it
    /// serves only the holder of the code.
    pub async fn nearby_sync(&self, code: String) -> Result<DirectSyncReport> {
        let code: PairingCode = code.parse().map_err(|_| {
            SatchelError::invalid(
                "not a Satchel pairing code (copy the whole code; it starts with satchel-nearby:)",
            )
        })?;
        let inner = Arc::clone(&self.inner);
        super::in_background(move |_| {
            let mut guard = lock(&inner)?;
            let report = connect(&mut guard.profile, &code, DEFAULT_STALL, super::now_ms())?;
            Ok(DirectSyncReport::from(&report))
        })
        .await
    }

    /// Members' devices of this record advertising on the local network
    /// (a listener started with `advertise`), found within `timeout_ms`
    /// (1 to 600 000), this device excluded. Names and ids are what the
    /// devices say until a direct sync proves them; `fingerprint` is what
    /// this record's access log holds for the id.
    pub async fn nearby_discover(&self, timeout_ms: u64) -> Result<Vec<NearbyDeviceInfo>> {
        if !(1..=MAX_DISCOVER_MS).contains(&timeout_ms) {
            return Err(SatchelError::invalid(format!(
                "the discovery timeout is in milliseconds, from 1 to {MAX_DISCOVER_MS}"
            )));
        }
        let inner = Arc::clone(&self.inner);
        super::in_background(move |_| {
            let (record, creator, me) = {
                let guard = lock(&inner)?;
                let p = &guard.profile;
                (p.record_id(), p.creator(), p.device_id())
            };
            let key = discovery_key_for(&record, &creator)
                .map_err(|_| SatchelError::storage("cannot derive the record's discovery key"))?;
            // Not locked while browsing.
            let found = discovery::browse(&[(record, key)], Duration::from_millis(timeout_ms))?;
            let guard = lock(&inner)?;
            let members = guard.profile.members();
            Ok(found
                .into_iter()
                .filter(|d| d.record == record && d.device.identity != me)
                .map(|d| {
                    let mut addresses = d.addresses;
                    addresses.sort_by_key(IpAddr::is_ipv6);
                    NearbyDeviceInfo {
                        name: d.device.name,
                        identity: d.device.identity.to_hex(),
                        fingerprint: members
                            .card(&d.device.identity)
                            .map(|card| card.fingerprint()),
                        addresses: addresses.iter().map(ToString::to_string).collect(),
                        port: d.port,
                    }
                })
                .collect())
        })
        .await
    }

    /// One direct sync with a device [`Self::nearby_discover`] found (at
    /// its first address, IPv4 preferred). Only the device with the
    /// advertised identity can answer.
    pub async fn nearby_sync_with(&self, device: NearbyDeviceInfo) -> Result<DirectSyncReport> {
        let identity = parse_identity_id(&device.identity)?;
        let mut addresses = device
            .addresses
            .iter()
            .map(|a| {
                a.parse::<IpAddr>()
                    .map_err(|_| SatchelError::invalid("not an IP address"))
            })
            .collect::<Result<Vec<_>>>()?;
        addresses.sort_by_key(IpAddr::is_ipv6);
        let Some(ip) = addresses.first().copied() else {
            return Err(SatchelError::invalid("the device has no address"));
        };
        let inner = Arc::clone(&self.inner);
        super::in_background(move |_| {
            let mut guard = lock(&inner)?;
            let report = connect_to(
                &mut guard.profile,
                SocketAddr::new(ip, device.port),
                Pairing {
                    token: None,
                    device: Some(identity),
                },
                DEFAULT_STALL,
                super::now_ms(),
            )?;
            Ok(DirectSyncReport::from(&report))
        })
        .await
    }

    /// One direct sync over a stream the app connected itself (a platform
    /// transport: see [`ByteStream`]). `initiator`: true on the device that
    /// opened the connection, false on the one that accepted it (exactly
    /// one of each). The other device must be a member of this record (the
    /// access log decides, as for every direct sync); compare the report's
    /// fingerprint with the one the other device shows. The record is
    /// locked once the secure handshake is done, until the session ends.
    /// Close the stream after this returns (or to abort it).
    pub async fn sync_over_stream(
        &self,
        stream: Arc<dyn ByteStream>,
        initiator: bool,
    ) -> Result<DirectSyncReport> {
        let inner = Arc::clone(&self.inner);
        super::in_background(move |_| {
            let failure = Arc::new(Mutex::new(None));
            let adapter = ForeignStream::new(stream, Arc::clone(&failure));
            let channel = if initiator {
                Channel::initiate(adapter)
            } else {
                Channel::respond(adapter)
            };
            let mut channel =
                channel.map_err(|e| stream_error(SessionError::Channel(e), &failure))?;
            let mut guard = lock(&inner)?;
            let report = session::run(
                &mut guard.profile,
                &mut channel,
                Pairing::default(),
                super::now_ms(),
            )
            .map_err(|e| stream_error(e, &failure))?;
            Ok(DirectSyncReport::from(&report))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    //! Two devices of one record (an owner's phone and a tablet it added),
    //! syncing through the facade over loopback TCP and over an in-memory
    //! [`ByteStream`] pair.

    use std::sync::mpsc;

    use super::*;
    use crate::api::types::EntryQuery;
    use crate::api::SatchelHome;
    use crate::crypto::{Identity, Role};
    use crate::profile::{MemorySecretStore, Profile, Unlock};
    use crate::store::SqliteStore;

    fn med(text: &str) -> String {
        serde_json::json!({"resourceType": "MedicationStatement", "status": "active",
            "medicationCodeableConcept": {"text": text}, "subject": {"reference": "Patient/p"}})
        .to_string()
    }

    #[derive(Default)]
    struct MapStore(Mutex<std::collections::BTreeMap<String, Vec<u8>>>);

    impl crate::api::SecretStore for MapStore {
        fn get(&self, name: String) -> Result<Option<Vec<u8>>> {
            Ok(self.0.lock().unwrap().get(&name).cloned())
        }
        fn put(&self, name: String, secret: Vec<u8>) -> Result<()> {
            self.0.lock().unwrap().insert(name, secret);
            Ok(())
        }
        fn delete(&self, name: String) -> Result<()> {
            self.0.lock().unwrap().remove(&name);
            Ok(())
        }
    }

    fn record(dir: &tempfile::TempDir, name: &str, owner: &str) -> Arc<HealthRecord> {
        let path = dir.path().join(name).to_string_lossy().to_string();
        SatchelHome::new(path, Arc::new(MapStore::default()))
            .unwrap()
            .create_record(owner.into())
            .unwrap()
    }

    /// A second device of `owner`'s record, added offline by `owner` (as
    /// tests/tests/nearby.rs does): it holds nothing until it syncs.
    fn tablet_of(
        owner: &HealthRecord,
        dir: &tempfile::TempDir,
        keys: &MemorySecretStore,
    ) -> Arc<HealthRecord> {
        let id = Identity::generate("tablet", Role::PatientDevice, None).unwrap();
        let card = id.card().clone();
        let mut guard = lock(&owner.inner).unwrap();
        let store = SqliteStore::open(&dir.path().join("tablet.db")).unwrap();
        let tablet = Profile::create_member(
            store,
            Unlock::SecretStore(keys),
            id,
            guard.profile.member_info(),
        )
        .unwrap();
        let statement = guard.profile.add_device_statement(&card).unwrap();
        guard.profile.apply_access_direct(vec![statement]).unwrap();
        HealthRecord::new(tablet)
    }

    fn ids(record: &HealthRecord) -> Vec<String> {
        let mut ids: Vec<String> = record
            .list(EntryQuery::default())
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        ids.sort();
        ids
    }

    fn rt() -> &'static tokio::runtime::Runtime {
        crate::api::runtime().unwrap()
    }

    #[test]
    fn facade_listens_and_syncs_with_a_pairing_code_over_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let keys = MemorySecretStore::new();
        let phone = record(&dir, "phone", "Pat");
        let tablet = tablet_of(&phone, &dir, &keys);
        phone.add(med("metformin"), None).unwrap();

        let listener = phone
            .start_nearby_listen(Some("127.0.0.1".into()), false)
            .unwrap();
        let code = listener.code();
        assert!(code.starts_with("satchel-nearby:127.0.0.1:"), "{code}");
        assert_eq!(
            listener.port(),
            code.parse::<PairingCode>().unwrap().addr.port()
        );
        let serving = {
            let listener = Arc::clone(&listener);
            rt().spawn(async move { listener.serve(30_000).await })
        };
        // The phone's record stays usable while it waits for the tablet.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(phone.list(EntryQuery::default()).unwrap().len(), 1);
        let scanned = rt().block_on(tablet.nearby_sync(code.clone())).unwrap();
        let shown = rt().block_on(serving).unwrap().unwrap();

        let phone_card = phone.device().unwrap();
        let tablet_card = tablet.device().unwrap();
        assert_eq!(scanned.peer_fingerprint, phone_card.fingerprint);
        assert_eq!(scanned.peer_identity, phone_card.identity);
        assert_eq!(shown.peer_fingerprint, tablet_card.fingerprint);
        assert_eq!(shown.peer_name, "tablet");
        assert!(scanned.statements_learned >= 1, "{scanned:?}");
        assert!(
            scanned.stored >= 1 && scanned.stored == shown.sent,
            "{scanned:?} {shown:?}"
        );
        assert!(!scanned.in_sync && scanned.bytes_received > 0 && scanned.bytes_sent > 0);
        assert_eq!(ids(&phone), ids(&tablet));
        assert_eq!(tablet.list(EntryQuery::default()).unwrap().len(), 1);

        // The code is used up: this listener serves no more.
        let again = rt().block_on(listener.serve(100)).unwrap_err();
        assert!(
            matches!(again, SatchelError::InvalidInput { .. }),
            "{again:?}"
        );

        // The other way round, after edits on both: they converge.
        phone.add(med("lisinopril"), None).unwrap();
        tablet.add(med("atorvastatin"), None).unwrap();
        let listener = tablet
            .start_nearby_listen(Some("127.0.0.1:0".into()), false)
            .unwrap();
        let serving = {
            let listener = Arc::clone(&listener);
            rt().spawn(async move { listener.serve(30_000).await })
        };
        let report = rt().block_on(phone.nearby_sync(listener.code())).unwrap();
        rt().block_on(serving).unwrap().unwrap();
        assert_eq!(report.sent, 1);
        assert_eq!(report.stored, 1);
        assert_eq!(ids(&phone), ids(&tablet));
        assert_eq!(ids(&phone).len(), 3);
    }

    #[test]
    fn facade_listener_refuses_a_wrong_code_reports_it_and_cancels() {
        let dir = tempfile::tempdir().unwrap();
        let keys = MemorySecretStore::new();
        let phone = record(&dir, "phone", "Pat");
        let tablet = tablet_of(&phone, &dir, &keys);
        phone.add(med("secret-diagnosis-xyz"), None).unwrap();

        let listener = phone
            .start_nearby_listen(Some("127.0.0.1".into()), false)
            .unwrap();
        let mut wrong: PairingCode = listener.code().parse().unwrap();
        wrong.token[0] ^= 1;
        let serving = {
            let listener = Arc::clone(&listener);
            rt().spawn(async move { listener.serve(3_000).await })
        };
        let err = rt()
            .block_on(tablet.nearby_sync(wrong.to_string()))
            .unwrap_err();
        let SatchelError::NotAllowed { reason } = &err else {
            panic!("expected NotAllowed, got {err:?}");
        };
        assert!(reason.contains("pairing code"), "{reason}");
        // Nothing else came: the listener's timeout reports the failure.
        let served = rt().block_on(serving).unwrap().unwrap_err();
        assert!(
            matches!(served, SatchelError::NotAllowed { .. }),
            "{served:?}"
        );
        assert!(tablet.list(EntryQuery::default()).unwrap().is_empty());
        assert!(!format!("{err} {served:?}").contains("secret-diagnosis"));

        // Not a code at all; a discovery timeout out of range.
        let err = rt().block_on(tablet.nearby_sync("satchel-link:abc".into()));
        assert!(
            matches!(err, Err(SatchelError::InvalidInput { .. })),
            "{err:?}"
        );
        let err = rt().block_on(tablet.nearby_discover(0));
        assert!(
            matches!(err, Err(SatchelError::InvalidInput { .. })),
            "{err:?}"
        );
        assert!(matches!(
            phone.start_nearby_listen(Some("not an address".into()), false),
            Err(SatchelError::InvalidInput { .. })
        ));

        // Nobody comes: Offline after the timeout; cancel ends a long wait.
        let listener = phone
            .start_nearby_listen(Some("127.0.0.1".into()), false)
            .unwrap();
        let err = rt().block_on(listener.serve(50)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "offline: direct sync: no device synced within 50 ms (nothing was changed)"
        );
        let serving = {
            let listener = Arc::clone(&listener);
            rt().spawn(async move { listener.serve(600_000).await })
        };
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        listener.cancel().unwrap();
        let err = rt().block_on(serving).unwrap().unwrap_err();
        assert!(matches!(err, SatchelError::Offline { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// One end of an in-memory duplex pipe (what a Bluetooth or Multipeer
    /// stream is to the app). Dropping the writer closes the other end's
    /// reads.
    struct PipeEnd {
        incoming: Mutex<(mpsc::Receiver<Vec<u8>>, Vec<u8>)>,
        outgoing: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
        /// Fail every write with this reason (a link that drops).
        broken: Option<String>,
    }

    impl PipeEnd {
        fn close(&self) {
            self.outgoing.lock().unwrap().take();
        }
    }

    fn pipe() -> (Arc<PipeEnd>, Arc<PipeEnd>) {
        let (a_tx, b_rx) = mpsc::channel();
        let (b_tx, a_rx) = mpsc::channel();
        let end = |rx, tx| {
            Arc::new(PipeEnd {
                incoming: Mutex::new((rx, Vec::new())),
                outgoing: Mutex::new(Some(tx)),
                broken: None,
            })
        };
        (end(a_rx, a_tx), end(b_rx, b_tx))
    }

    impl ByteStream for PipeEnd {
        fn read(&self, max: u32) -> Result<Vec<u8>> {
            let mut incoming = self.incoming.lock().unwrap();
            if incoming.1.is_empty() {
                match incoming.0.recv_timeout(Duration::from_secs(10)) {
                    Ok(bytes) => incoming.1 = bytes,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(Vec::new()),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        return Err(SatchelError::Offline {
                            reason: "the pipe timed out".into(),
                        })
                    }
                }
            }
            let n = incoming.1.len().min(max as usize);
            Ok(incoming.1.drain(..n).collect())
        }

        fn write(&self, bytes: Vec<u8>) -> Result<()> {
            if let Some(reason) = &self.broken {
                return Err(SatchelError::Offline {
                    reason: reason.clone(),
                });
            }
            match self.outgoing.lock().unwrap().as_ref() {
                Some(tx) => tx.send(bytes).map_err(|_| SatchelError::Offline {
                    reason: "the other end is gone".into(),
                }),
                None => Err(SatchelError::Offline {
                    reason: "closed".into(),
                }),
            }
        }
    }

    /// `a` initiates, `b` responds, over a fresh pipe pair.
    fn over_pipe(
        a: &Arc<HealthRecord>,
        b: &Arc<HealthRecord>,
    ) -> (Result<DirectSyncReport>, Result<DirectSyncReport>) {
        let (a_end, b_end) = pipe();
        let responder = {
            let b = Arc::clone(b);
            let b_end = Arc::clone(&b_end);
            rt().spawn(async move {
                let r = b.sync_over_stream(b_end.clone(), false).await;
                b_end.close();
                r
            })
        };
        let initiated = rt().block_on(a.sync_over_stream(a_end.clone(), true));
        a_end.close();
        (initiated, rt().block_on(responder).unwrap())
    }

    #[test]
    fn facade_syncs_over_an_app_byte_stream_and_refuses_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let keys = MemorySecretStore::new();
        let phone = record(&dir, "phone", "Pat");
        let tablet = tablet_of(&phone, &dir, &keys);
        phone
            .add(format!("[{}, {}]", med("a"), med("b")), None)
            .unwrap();

        let (scanned, shown) = over_pipe(&tablet, &phone);
        let (scanned, shown) = (scanned.unwrap(), shown.unwrap());
        assert_eq!(
            scanned.peer_fingerprint,
            phone.device().unwrap().fingerprint
        );
        assert_eq!(shown.peer_identity, tablet.device_id().unwrap());
        assert!(scanned.stored >= 1 && scanned.stored == shown.sent);
        assert_eq!(ids(&phone), ids(&tablet));
        assert_eq!(ids(&tablet).len(), 2);

        // Edits on both sides, then the phone initiates.
        phone.add(med("c"), None).unwrap();
        tablet.add(med("d"), None).unwrap();
        let (a, b) = over_pipe(&phone, &tablet);
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!((a.sent, a.stored, b.sent, b.stored), (1, 1, 1, 1));
        assert_eq!(ids(&phone), ids(&tablet));
        assert_eq!(ids(&phone).len(), 4);
        let (a, b) = over_pipe(&phone, &tablet);
        assert!(a.unwrap().in_sync && b.unwrap().in_sync);

        // A device of another record is refused, and learns nothing.
        let stranger = record(&dir, "stranger", "Sam");
        let (a, b) = over_pipe(&stranger, &phone);
        for err in [a.unwrap_err(), b.unwrap_err()] {
            assert!(matches!(err, SatchelError::NotAllowed { .. }), "{err:?}");
        }
        assert!(stranger.list(EntryQuery::default()).unwrap().is_empty());

        // The app's stream fails: its reason comes back as Offline.
        let (mut a_end, _b_end) = pipe();
        Arc::get_mut(&mut a_end).unwrap().broken = Some("bluetooth link lost".into());
        let err = rt()
            .block_on(tablet.sync_over_stream(a_end, true))
            .unwrap_err();
        let SatchelError::Offline { reason } = &err else {
            panic!("expected Offline, got {err:?}");
        };
        assert!(reason.contains("bluetooth link lost"), "{reason}");
    }
}
