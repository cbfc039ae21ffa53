//! The direct channel: a Noise XX session over any byte stream (a TCP
//! connection, or a platform transport such as Bluetooth or Multipeer
//! handed in as `Read + Write`), carrying [`Message`]s.
//!
//! On the wire: the three handshake messages, then transport messages,
//! each as a 2-byte big-endian length and the Noise bytes. A [`Message`]
//! is its 4-byte big-endian length and postcard bytes, split into Noise
//! transport messages of at most [`NOISE_CHUNK`] plaintext bytes; a length
//! over [`MAX_MESSAGE_BYTES`] ends the connection before anything more is
//! read. Static Noise keys are fresh per connection: who is at the other
//! end is proven afterwards ([`satchel_protocol::direct::proof`]) with the
//! identity key, over [`Channel::handshake_hash`].
//!
//! A stalled peer is the stream's business: set a read timeout on it
//! (`TcpStream::set_read_timeout`), and a stall becomes
//! [`ChannelError::Stalled`].

use std::io::{self, Read, Write};

use satchel_protocol::direct::{
    proof::Side, Message, MessageError, MAX_MESSAGE_BYTES, MAX_NOISE_MESSAGE, NOISE_CHUNK,
    NOISE_PATTERN, PROLOGUE,
};
use zeroize::Zeroizing;

/// Why the channel failed. No content, no addresses.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The other end closed the connection.
    #[error("the other device closed the connection")]
    Closed,
    /// Nothing arrived within the stream's read timeout.
    #[error("the other device stopped answering (timed out)")]
    Stalled,
    /// Reading or writing the stream failed.
    #[error("the connection failed ({0})")]
    Io(io::ErrorKind),
    /// The Noise handshake failed: not a Satchel device, a replayed or
    /// tampered handshake, or another protocol version.
    #[error(
        "the secure handshake failed (not a Satchel device, or a replayed or tampered handshake)"
    )]
    Handshake,
    /// A transport message did not decrypt: tampered, replayed or garbage.
    #[error("a message on the secure channel did not decrypt (tampered, replayed or garbage)")]
    Decrypt,
    /// A message announced more bytes than the limit.
    #[error("the other device sent a message over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge,
    /// A message did not parse.
    #[error("the other device sent a message that does not parse")]
    Malformed,
}

impl From<io::Error> for ChannelError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ChannelError::Closed,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ChannelError::Stalled,
            kind => ChannelError::Io(kind),
        }
    }
}

impl From<MessageError> for ChannelError {
    fn from(e: MessageError) -> Self {
        match e {
            MessageError::TooLarge => ChannelError::TooLarge,
            MessageError::Malformed | MessageError::Encode => ChannelError::Malformed,
        }
    }
}

pub type Result<T> = std::result::Result<T, ChannelError>;

/// An established channel.
pub struct Channel<S: Read + Write> {
    stream: S,
    noise: snow::TransportState,
    handshake_hash: Vec<u8>,
    side: Side,
    sent: u64,
    received: u64,
}

impl<S: Read + Write> std::fmt::Debug for Channel<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("side", &self.side)
            .field("sent", &self.sent)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

fn builder() -> Result<snow::Builder<'static>> {
    let params = NOISE_PATTERN.parse().map_err(|_| ChannelError::Handshake)?;
    Ok(snow::Builder::new(params))
}

impl<S: Read + Write> Channel<S> {
    /// Run the handshake as the initiator (the device that connected).
    pub fn initiate(stream: S) -> Result<Self> {
        Self::handshake(stream, Side::Initiator)
    }

    /// Run the handshake as the responder (the listening device).
    pub fn respond(stream: S) -> Result<Self> {
        Self::handshake(stream, Side::Responder)
    }

    fn handshake(mut stream: S, side: Side) -> Result<Self> {
        let keys = builder()?
            .generate_keypair()
            .map_err(|_| ChannelError::Handshake)?;
        let private = Zeroizing::new(keys.private);
        let b = builder()?
            .local_private_key(&private)
            .and_then(|b| b.prologue(PROLOGUE))
            .map_err(|_| ChannelError::Handshake)?;
        let mut hs = match side {
            Side::Initiator => b.build_initiator(),
            Side::Responder => b.build_responder(),
        }
        .map_err(|_| ChannelError::Handshake)?;
        let mut buf = vec![0u8; MAX_NOISE_MESSAGE];
        let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
        let mut sent = 0u64;
        let mut received = 0u64;
        while !hs.is_handshake_finished() {
            if hs.is_my_turn() {
                let n = hs
                    .write_message(&[], &mut buf)
                    .map_err(|_| ChannelError::Handshake)?;
                sent += write_frame(&mut stream, &buf[..n])?;
            } else {
                let frame = read_frame(&mut stream, &mut buf)?;
                received += 2 + frame as u64;
                let n = hs
                    .read_message(&buf[..frame], &mut payload)
                    .map_err(|_| ChannelError::Handshake)?;
                if n != 0 {
                    // XX handshake payloads are empty in this protocol.
                    return Err(ChannelError::Handshake);
                }
            }
        }
        let handshake_hash = hs.get_handshake_hash().to_vec();
        let noise = hs
            .into_transport_mode()
            .map_err(|_| ChannelError::Handshake)?;
        Ok(Channel {
            stream,
            noise,
            handshake_hash,
            side,
            sent,
            received,
        })
    }

    /// The Noise handshake hash both ends share: what the identity proofs
    /// sign.
    pub fn handshake_hash(&self) -> &[u8] {
        &self.handshake_hash
    }

    /// Which end this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Bytes written to and read from the stream so far (framing, Noise
    /// overhead and all).
    pub fn bytes(&self) -> (u64, u64) {
        (self.sent, self.received)
    }

    /// Send one message.
    pub fn send(&mut self, message: &Message) -> Result<()> {
        let body = message.to_bytes()?;
        let len = u32::try_from(body.len()).map_err(|_| ChannelError::TooLarge)?;
        let mut plain = Vec::with_capacity(4 + body.len());
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(&body);
        drop(body);
        let mut buf = vec![0u8; MAX_NOISE_MESSAGE];
        for chunk in plain.chunks(NOISE_CHUNK) {
            let n = self
                .noise
                .write_message(chunk, &mut buf)
                .map_err(|_| ChannelError::Decrypt)?;
            self.sent += write_frame(&mut self.stream, &buf[..n])?;
        }
        self.stream.flush()?;
        Ok(())
    }

    /// Receive one message.
    pub fn recv(&mut self) -> Result<Message> {
        let mut buf = vec![0u8; MAX_NOISE_MESSAGE];
        let mut plain = vec![0u8; MAX_NOISE_MESSAGE];
        let first = self.read_chunk(&mut buf, &mut plain)?;
        let Some((len, rest)) = first.split_first_chunk::<4>() else {
            return Err(ChannelError::Malformed);
        };
        let total =
            usize::try_from(u32::from_be_bytes(*len)).map_err(|_| ChannelError::TooLarge)?;
        if total > MAX_MESSAGE_BYTES {
            return Err(ChannelError::TooLarge);
        }
        if rest.len() > total {
            return Err(ChannelError::Malformed);
        }
        let mut body = Vec::with_capacity(total);
        body.extend_from_slice(rest);
        while body.len() < total {
            let more = self.read_chunk(&mut buf, &mut plain)?;
            if body.len() + more.len() > total {
                return Err(ChannelError::Malformed);
            }
            body.extend_from_slice(more);
        }
        Ok(Message::from_bytes(&body)?)
    }

    fn read_chunk<'p>(&mut self, buf: &mut [u8], plain: &'p mut [u8]) -> Result<&'p [u8]> {
        let frame = read_frame(&mut self.stream, buf)?;
        self.received += 2 + frame as u64;
        let n = self
            .noise
            .read_message(&buf[..frame], plain)
            .map_err(|_| ChannelError::Decrypt)?;
        Ok(&plain[..n])
    }

    /// The stream back (after the session).
    pub fn into_inner(self) -> S {
        self.stream
    }
}

/// Write one Noise message with its 2-byte length; returns bytes written.
fn write_frame<W: Write>(w: &mut W, bytes: &[u8]) -> Result<u64> {
    let len = u16::try_from(bytes.len()).map_err(|_| ChannelError::TooLarge)?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(bytes)?;
    Ok(2 + bytes.len() as u64)
}

/// Read one Noise message into `buf`; returns its length. A zero length
/// is not a Noise message.
fn read_frame<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len)?;
    let len = usize::from(u16::from_be_bytes(len));
    if len == 0 || len > buf.len() {
        return Err(ChannelError::Malformed);
    }
    r.read_exact(&mut buf[..len])?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    fn pair() -> (Channel<TcpStream>, Channel<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            Channel::respond(s).unwrap()
        });
        let client = Channel::initiate(TcpStream::connect(addr).unwrap()).unwrap();
        (client, server.join().unwrap())
    }

    #[test]
    fn messages_cross_in_both_directions_and_large_ones_are_split() {
        let (mut a, mut b) = pair();
        assert_eq!(a.handshake_hash(), b.handshake_hash());
        let big = Message::Envelopes(satchel_protocol::direct::Envelopes {
            log: "labs".into(),
            envelopes: vec![vec![7u8; 300_000], vec![1, 2, 3]],
        });
        let sent = big.clone();
        let t = thread::spawn(move || {
            a.send(&sent).unwrap();
            a.recv().unwrap()
        });
        assert_eq!(b.recv().unwrap(), big);
        b.send(&Message::Want(vec![])).unwrap();
        assert_eq!(t.join().unwrap(), Message::Want(vec![]));
    }

    #[test]
    fn handshake_hashes_differ_per_connection() {
        let (a, _) = pair();
        let (c, _) = pair();
        assert_ne!(a.handshake_hash(), c.handshake_hash());
    }
}
