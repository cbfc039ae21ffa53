//! Finding nearby members' devices on the local network: publishing this
//! device's adverts ([`Advertiser`]) and browsing for other members'
//! ([`browse`]) over DNS-SD/mDNS (the `mdns-sd` crate: docs/adr/0010).
//!
//! The advert format is the protocol's ([`satchel_protocol::discovery`]):
//! service `_satchel._tcp.local.`, an instance name only members recognise
//! (salted tag over the record's discovery key and the hour), and the TXT
//! entry `i` with the device's identity id and name sealed under a key
//! derived from the discovery key and the hour. This module owns the mDNS
//! daemon, the clock reads (the protocol reads none) and the hourly
//! re-advertising; what a bystander on the network learns is in
//! docs/security.md, "Discovery on the local network".
//!
//! An advert is where to connect, not who is there: the direct channel
//! (`nearby::channel`) authenticates the device by its identity key.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mdns_sd::{DaemonEvent, RecvTimeoutError, ServiceDaemon, ServiceEvent, ServiceInfo};
use satchel_protocol::crypto::random;
use satchel_protocol::discovery::{
    self as format, advert_matches, advert_name, hour_at, open_device_info, seal_device_info,
    HOUR_MS, NAME_SALT_LEN, SERVICE_TYPE, TXT_KEY,
};

use crate::ids::RecordId;

pub use satchel_protocol::discovery::{discovery_key_for, DeviceAdvert, DiscoveryKey};

/// How long [`Advertiser::stop`] waits for the daemon to confirm each
/// withdrawn advert (it sends the mDNS "goodbye" first).
const UNREGISTER_WAIT: Duration = Duration::from_secs(2);
/// How often a browse checks the daemon's own error reports.
const POLL: Duration = Duration::from_millis(100);

/// What can go wrong advertising or browsing. Messages name no record,
/// person or device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Building or reading an advert failed (a name too long, a clock before
    /// 1970, ...).
    #[error(transparent)]
    Advert(#[from] format::DiscoveryError),
    /// The mDNS daemon could not start, refused a command or stopped.
    /// Its text names service types and opaque advert names only.
    #[error("mDNS discovery failed: {0}")]
    Daemon(String),
    /// The operating system's random number generator failed.
    #[error("system random number generator failed")]
    Rng,
}

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(err: mdns_sd::Error) -> Self {
        Self::Daemon(err.to_string())
    }
}

/// Result alias for [`DiscoveryError`].
pub type Result<T> = std::result::Result<T, DiscoveryError>;

/// A member's device found on the local network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearbyDevice {
    /// The record whose discovery key recognised the advert.
    pub record: RecordId,
    /// Which device it says it is (sealed: only members can read it). Not
    /// yet proven: the direct channel checks the identity key.
    pub device: DeviceAdvert,
    /// Its addresses (IPv4 and IPv6), sorted.
    pub addresses: Vec<IpAddr>,
    /// The TCP port of its direct-sync listener.
    pub port: u16,
}

/// Unix time in milliseconds, from the device clock (the protocol never
/// reads it; this module passes it in).
fn now_ms() -> i64 {
    crate::profile::now_ms()
}

/// This device's adverts, one per record, on `port`. Call
/// [`Advertiser::refresh`] at least once a minute: it re-advertises under
/// new names when the hour changes. [`Advertiser::stop`] (or dropping it)
/// withdraws them.
pub struct Advertiser {
    daemon: ServiceDaemon,
    records: Vec<(DiscoveryKey, DeviceAdvert)>,
    port: u16,
    hour: u64,
    /// Full DNS-SD names of the adverts now registered.
    registered: Vec<String>,
    stopped: bool,
}

impl std::fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertiser")
            .field("records", &self.records.len())
            .field("port", &self.port)
            .field("hour", &self.hour)
            .finish_non_exhaustive()
    }
}

impl Advertiser {
    /// Start an mDNS daemon and advertise each `(key, device)` for the hour
    /// of `now_ms`. Every advert is checked (device name length and
    /// characters) before anything is published.
    pub fn start(records: &[(DiscoveryKey, DeviceAdvert)], port: u16, now_ms: i64) -> Result<Self> {
        let hour = hour_at(now_ms)?;
        // Check every advert before the daemon starts: nothing half-published.
        for (key, device) in records {
            seal_device_info(key, hour, device, [0; 12])?;
        }
        let daemon = ServiceDaemon::new()?;
        let mut advertiser = Self {
            daemon,
            records: records.to_vec(),
            port,
            hour,
            registered: Vec::new(),
            stopped: false,
        };
        advertiser.register_all()?;
        Ok(advertiser)
    }

    /// The hour the current adverts were made for.
    pub fn hour(&self) -> u64 {
        self.hour
    }

    /// When the current adverts' names expire (Unix ms): call
    /// [`Advertiser::refresh`] then or soon after.
    pub fn next_refresh_ms(&self) -> i64 {
        i64::try_from(self.hour.saturating_add(1))
            .unwrap_or(i64::MAX)
            .saturating_mul(HOUR_MS)
    }

    /// Re-advertise under the names of the hour of `now_ms` if it is not
    /// the current adverts' hour. Returns whether it did.
    pub fn refresh(&mut self, now_ms: i64) -> Result<bool> {
        let hour = hour_at(now_ms)?;
        if hour == self.hour {
            return Ok(false);
        }
        self.unregister_all()?;
        self.hour = hour;
        self.register_all()?;
        Ok(true)
    }

    /// Re-advertise if the device clock says the hour has changed.
    pub fn refresh_now(&mut self) -> Result<bool> {
        self.refresh(now_ms())
    }

    /// Withdraw every advert (mDNS goodbye) and stop the daemon.
    pub fn stop(mut self) -> Result<()> {
        self.stopped = true;
        self.unregister_all()?;
        self.daemon.shutdown()?;
        Ok(())
    }

    fn register_all(&mut self) -> Result<()> {
        for (key, device) in &self.records {
            let salt: [u8; NAME_SALT_LEN] = random::array().map_err(|_| DiscoveryError::Rng)?;
            let nonce: [u8; 12] = random::array().map_err(|_| DiscoveryError::Rng)?;
            let name = advert_name(key, self.hour, salt)?;
            let sealed = seal_device_info(key, self.hour, device, nonce)?;
            // The host name is the opaque advert name too: the machine's own
            // host name would tell a bystander whose device it is.
            let info = ServiceInfo::new(
                SERVICE_TYPE,
                &name,
                &format!("{name}.local."),
                "",
                self.port,
                &[(TXT_KEY, sealed.as_str())][..],
            )?
            .enable_addr_auto();
            let fullname = info.get_fullname().to_string();
            self.daemon.register(info)?;
            self.registered.push(fullname);
        }
        Ok(())
    }

    fn unregister_all(&mut self) -> Result<()> {
        let mut first_error = None;
        for fullname in std::mem::take(&mut self.registered) {
            let outcome = self
                .daemon
                .unregister(&fullname)
                .map_err(DiscoveryError::from)
                .and_then(|status| {
                    status
                        .recv_timeout(UNREGISTER_WAIT)
                        .map(|_| ())
                        .map_err(|_| DiscoveryError::Daemon("an advert was not withdrawn".into()))
                });
            if let Err(err) = outcome {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if let Err(err) = self.unregister_all() {
            tracing::warn!(error = %err, "nearby adverts were not all withdrawn");
        }
        if let Err(err) = self.daemon.shutdown() {
            tracing::warn!(error = %err, "the mDNS daemon did not shut down");
        }
    }
}

/// The instance part of a DNS-SD full name of our service type.
fn instance_of(fullname: &str) -> Option<&str> {
    fullname
        .strip_suffix(SERVICE_TYPE)
        .and_then(|rest| rest.strip_suffix('.'))
}

/// Which record an advert belongs to and which device it is, if it is a
/// member's: its name matches one of `keys` for one of `hours` and its
/// sealed info opens. `Ok(None)` for anything else on the network (another
/// record's advert, a bystander's, another service). A name that matches
/// but whose info does not open is skipped with a warning (a device of a
/// newer version, or tampering): it is not a member's advert this device
/// can use.
pub fn identify(
    keys: &[(RecordId, DiscoveryKey)],
    hours: &[u64],
    instance: &str,
    sealed: Option<&str>,
) -> Result<Option<(RecordId, DeviceAdvert)>> {
    for (record, key) in keys {
        for &hour in hours {
            if !advert_matches(key, hour, instance)? {
                continue;
            }
            let Some(sealed) = sealed else {
                tracing::warn!("a nearby member's advert has no device info; skipped");
                return Ok(None);
            };
            return match open_device_info(key, hour, sealed) {
                Ok(device) => Ok(Some((*record, device))),
                Err(err) => {
                    tracing::warn!(error = %err, "a nearby member's advert did not open; skipped");
                    Ok(None)
                }
            };
        }
    }
    Ok(None)
}

/// The hours whose adverts a browse at `now_ms` accepts: the current one
/// and its neighbours, so a clock a few minutes off either way still finds
/// the device across an hour boundary.
pub fn hours_around(now_ms: i64) -> Result<Vec<u64>> {
    let hour = hour_at(now_ms)?;
    let mut hours = vec![hour];
    if let Some(previous) = hour.checked_sub(1) {
        hours.push(previous);
    }
    hours.push(hour.saturating_add(1));
    Ok(hours)
}

/// Browse the local network for `timeout` and return the members' devices
/// whose adverts match one of `keys` (for the current hour by the device
/// clock, or a neighbouring one). Everything else on the network is ignored;
/// a daemon that fails or stops is an error, never an empty list.
pub fn browse(keys: &[(RecordId, DiscoveryKey)], timeout: Duration) -> Result<Vec<NearbyDevice>> {
    browse_at(keys, timeout, now_ms())
}

/// [`browse`] with the time given (for tests).
pub fn browse_at(
    keys: &[(RecordId, DiscoveryKey)],
    timeout: Duration,
    now_ms: i64,
) -> Result<Vec<NearbyDevice>> {
    let hours = hours_around(now_ms)?;
    let daemon = ServiceDaemon::new()?;
    let result = browse_with(&daemon, keys, &hours, timeout);
    let stopped = daemon
        .stop_browse(SERVICE_TYPE)
        .and_then(|()| daemon.shutdown().map(drop));
    let found = result?;
    stopped?;
    Ok(found)
}

fn browse_with(
    daemon: &ServiceDaemon,
    keys: &[(RecordId, DiscoveryKey)],
    hours: &[u64],
    timeout: Duration,
) -> Result<Vec<NearbyDevice>> {
    let monitor = daemon.monitor()?;
    let events = daemon.browse(SERVICE_TYPE)?;
    let deadline = Instant::now() + timeout;
    let mut found: BTreeMap<String, NearbyDevice> = BTreeMap::new();
    loop {
        if let Ok(DaemonEvent::Error(err)) = monitor.try_recv() {
            return Err(err.into());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match events.recv_timeout(left.min(POLL)) {
            Ok(ServiceEvent::ServiceResolved(service)) => {
                let Some(instance) = instance_of(&service.fullname) else {
                    continue;
                };
                let sealed = service.get_property_val_str(TXT_KEY);
                if let Some((record, device)) = identify(keys, hours, instance, sealed)? {
                    let mut addresses: Vec<IpAddr> = service
                        .addresses
                        .iter()
                        .map(mdns_sd::ScopedIp::to_ip_addr)
                        .collect();
                    addresses.sort();
                    addresses.dedup();
                    found.insert(
                        service.fullname.clone(),
                        NearbyDevice {
                            record,
                            device,
                            addresses,
                            port: service.port,
                        },
                    );
                }
            }
            Ok(ServiceEvent::ServiceRemoved(_, fullname)) => {
                found.remove(&fullname);
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(DiscoveryError::Daemon(
                    "the mDNS daemon stopped while browsing".into(),
                ));
            }
        }
    }
    let mut devices: Vec<NearbyDevice> = found.into_values().collect();
    devices.sort_by(|a, b| {
        (a.record, &a.device.name, a.device.identity).cmp(&(
            b.record,
            &b.device.name,
            b.device.identity,
        ))
    });
    Ok(devices)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ids::IdentityId;

    fn key(byte: u8) -> (RecordId, DiscoveryKey) {
        let record = RecordId([byte; 16]);
        let key = discovery_key_for(&record, &IdentityId([0x22; 32])).unwrap();
        (record, key)
    }

    fn device() -> DeviceAdvert {
        DeviceAdvert {
            identity: IdentityId([0x44; 32]),
            name: "Hall phone".into(),
        }
    }

    const NOW: i64 = 490_000 * HOUR_MS + 10_000;

    #[test]
    fn identify_finds_members_and_ignores_everything_else() {
        let (record, k) = key(1);
        let other = key(2);
        let hour = hour_at(NOW).unwrap();
        let hours = hours_around(NOW).unwrap();
        let name = advert_name(&k, hour, [7; NAME_SALT_LEN]).unwrap();
        let sealed = seal_device_info(&k, hour, &device(), [9; 12]).unwrap();

        let keys = [other, (record, k.clone())];
        let got = identify(&keys, &hours, &name, Some(&sealed)).unwrap();
        assert_eq!(got, Some((record, device())));

        // Another record's browser does not recognise it.
        assert_eq!(
            identify(&[key(2)], &hours, &name, Some(&sealed)).unwrap(),
            None
        );
        // A bystander's advert, a printer: nothing, and no error.
        assert_eq!(
            identify(&keys, &hours, "Office printer", Some("x")).unwrap(),
            None
        );
        // The right name with info that does not open: skipped.
        let wrong = seal_device_info(&key(3).1, hour, &device(), [9; 12]).unwrap();
        assert_eq!(identify(&keys, &hours, &name, Some(&wrong)).unwrap(), None);
        assert_eq!(identify(&keys, &hours, &name, None).unwrap(), None);
    }

    #[test]
    fn neighbouring_hours_are_accepted_older_ones_are_not() {
        let (record, k) = key(1);
        let hour = hour_at(NOW).unwrap();
        let hours = hours_around(NOW).unwrap();
        for h in [hour - 1, hour, hour + 1] {
            let name = advert_name(&k, h, [7; NAME_SALT_LEN]).unwrap();
            let sealed = seal_device_info(&k, h, &device(), [9; 12]).unwrap();
            let keys = [(record, k.clone())];
            assert!(identify(&keys, &hours, &name, Some(&sealed))
                .unwrap()
                .is_some());
        }
        let stale = advert_name(&k, hour - 2, [7; NAME_SALT_LEN]).unwrap();
        let sealed = seal_device_info(&k, hour - 2, &device(), [9; 12]).unwrap();
        assert_eq!(
            identify(&[(record, k)], &hours, &stale, Some(&sealed)).unwrap(),
            None
        );
    }

    #[test]
    fn instance_names_come_from_our_service_type_only() {
        assert_eq!(instance_of("abc._satchel._tcp.local."), Some("abc"));
        assert_eq!(instance_of("abc._http._tcp.local."), None);
        assert_eq!(instance_of("_satchel._tcp.local."), None);
    }

    #[test]
    fn a_bad_device_name_is_refused_before_anything_is_published() {
        let (_, k) = key(1);
        let mut bad = device();
        bad.name = "x".repeat(200);
        let err = Advertiser::start(&[(k, bad)], 4000, NOW).unwrap_err();
        assert!(matches!(
            err,
            DiscoveryError::Advert(format::DiscoveryError::NameTooLong { .. })
        ));
        let err = Advertiser::start(&[], 4000, -1).unwrap_err();
        assert_eq!(err.to_string(), "time is before the Unix epoch");
    }
}
