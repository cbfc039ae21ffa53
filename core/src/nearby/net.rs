//! Direct sync over TCP: connect with a pairing code, or listen and serve.
//! Every connection gets read and write timeouts (a stalled peer ends its
//! connection, not the listener) and runs one session; a connection that
//! fails (garbage, a truncated or oversized frame, a replayed handshake, a
//! refused peer) is reported and the listener goes on serving.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::channel::Channel;
use super::pairing::PairingCode;
use super::session::{self, DirectReport, Pairing, Progress, SessionError};
use crate::profile::Profile;
use crate::store::Store;

/// How long a peer may stay silent mid-session before its connection ends.
pub const DEFAULT_STALL: Duration = Duration::from_secs(10);

/// This machine's address on its default route (what to put in a pairing
/// code), found without sending a packet (a UDP socket is only connected);
/// 127.0.0.1 when there is none.
pub fn local_address() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn prepare(stream: &TcpStream, stall: Duration) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(stall))?;
    stream.set_write_timeout(Some(stall))?;
    stream.set_nodelay(true)
}

/// Sync once with the device that showed `code`.
pub fn connect<S: Store>(
    profile: &mut Profile<S>,
    code: &PairingCode,
    stall: Duration,
    now_ms: i64,
) -> Result<DirectReport, SessionError> {
    connect_to(profile, code.addr, code.pairing(), stall, now_ms)
}

/// Sync once with the device listening at `addr` (found by mDNS: no
/// token, and `pairing.device` names the identity its advert claimed).
pub fn connect_to<S: Store>(
    profile: &mut Profile<S>,
    addr: SocketAddr,
    pairing: Pairing,
    stall: Duration,
    now_ms: i64,
) -> Result<DirectReport, SessionError> {
    connect_to_with_progress(profile, addr, pairing, stall, now_ms, &mut |_| {})
}

/// [`connect_to`], telling `progress` as envelopes arrive.
pub fn connect_to_with_progress<S: Store>(
    profile: &mut Profile<S>,
    addr: SocketAddr,
    pairing: Pairing,
    stall: Duration,
    now_ms: i64,
    progress: &mut dyn FnMut(Progress),
) -> Result<DirectReport, SessionError> {
    let stream =
        TcpStream::connect_timeout(&addr, stall).map_err(|e| SessionError::Channel(e.into()))?;
    prepare(&stream, stall).map_err(|e| SessionError::Channel(e.into()))?;
    let mut channel = Channel::initiate(stream)?;
    session::run_with_progress(profile, &mut channel, pairing, now_ms, progress)
}

/// Run one session as the responder on an accepted connection.
pub fn serve_connection<S: Store>(
    profile: &mut Profile<S>,
    stream: TcpStream,
    pairing: Pairing,
    stall: Duration,
    now_ms: i64,
) -> Result<DirectReport, SessionError> {
    serve_connection_with_progress(profile, stream, pairing, stall, now_ms, &mut |_| {})
}

/// [`serve_connection`], telling `progress` as envelopes arrive.
pub fn serve_connection_with_progress<S: Store>(
    profile: &mut Profile<S>,
    stream: TcpStream,
    pairing: Pairing,
    stall: Duration,
    now_ms: i64,
    progress: &mut dyn FnMut(Progress),
) -> Result<DirectReport, SessionError> {
    prepare(&stream, stall).map_err(|e| SessionError::Channel(e.into()))?;
    let mut channel = Channel::respond(stream)?;
    session::run_with_progress(profile, &mut channel, pairing, now_ms, progress)
}

/// Serve on `listener` until one session succeeds (its report) or
/// `deadline` passes (`None`). `pairing.token`, when set, is required of
/// every peer (a pairing code's one-time token: consumed by the first
/// session that succeeds). `now_ms` is asked at each session's start;
/// `on_failure` hears about every connection that failed.
pub fn serve_one<S: Store>(
    profile: &mut Profile<S>,
    listener: &TcpListener,
    pairing: Pairing,
    stall: Duration,
    deadline: Instant,
    now_ms: impl FnMut() -> i64,
    on_failure: impl FnMut(&SessionError),
) -> io::Result<Option<DirectReport>> {
    serve_one_with_progress(
        profile,
        listener,
        pairing,
        stall,
        deadline,
        now_ms,
        on_failure,
        &mut |_| {},
    )
}

/// [`serve_one`], telling `progress` as envelopes arrive.
#[allow(clippy::too_many_arguments)]
pub fn serve_one_with_progress<S: Store>(
    profile: &mut Profile<S>,
    listener: &TcpListener,
    pairing: Pairing,
    stall: Duration,
    deadline: Instant,
    mut now_ms: impl FnMut() -> i64,
    mut on_failure: impl FnMut(&SessionError),
    progress: &mut dyn FnMut(Progress),
) -> io::Result<Option<DirectReport>> {
    listener.set_nonblocking(true)?;
    while Instant::now() < deadline {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(e),
        };
        match serve_connection_with_progress(profile, stream, pairing, stall, now_ms(), progress) {
            Ok(report) => return Ok(Some(report)),
            Err(e) => on_failure(&e),
        }
    }
    Ok(None)
}
