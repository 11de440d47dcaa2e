//! Framing after the handshake (§4.6), sans-I/O.
//!
//! Each command travels as two Noise transport messages written together:
//! `AEAD(u32be(ct_len))` (20 bytes) and `AEAD(command)` (`ct_len` bytes), after
//! which the sender rekeys its cipher state; the receiver mirrors this.
//! [`FrameSender`] produces those bytes; [`FrameDecoder`] consumes arbitrary
//! chunks of received bytes and yields command plaintexts.

use crate::geometry::MAX_NOISE_MESSAGE_LENGTH;

use super::handshake::symmetric::{CipherError, CipherState, TAG_LEN};

/// The encrypted length prefix: u32be + tag.
pub const FRAME_HEADER_LEN: usize = 4 + TAG_LEN;
/// The largest encrypted command (tag included).
pub const MAX_CIPHERTEXT_LEN: usize = MAX_NOISE_MESSAGE_LENGTH;
/// The largest command plaintext: 1,048,560 bytes.
pub const MAX_COMMAND_LEN: usize = MAX_CIPHERTEXT_LEN - TAG_LEN;

/// The wire command header length (id, reserved, u32be length).
const COMMAND_HEADER_LEN: usize = 6;

/// A framing failure. Every error except [`FrameError::CommandTooLarge`]
/// leaves the session unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The command to send exceeds [`MAX_COMMAND_LEN`].
    #[error("command of {0} bytes exceeds the 1,048,560-byte maximum")]
    CommandTooLarge(usize),
    /// The peer announced a ciphertext length outside 16..=1,048,576.
    #[error("peer announced an invalid frame length {0}")]
    BadLength(u32),
    /// The length prefix failed to decrypt.
    #[error("frame length prefix: {0}")]
    Header(CipherError),
    /// The command failed to decrypt.
    #[error("frame body: {0}")]
    Body(CipherError),
    /// A previous error made this direction of the session unusable.
    #[error("session is no longer usable after an earlier error")]
    Poisoned,
}

/// Seals commands for sending.
#[derive(Debug)]
pub struct FrameSender {
    cs: CipherState,
    poisoned: bool,
}

impl FrameSender {
    /// From the sending cipher state of a completed handshake.
    pub fn new(cs: CipherState) -> Self {
        FrameSender {
            cs,
            poisoned: false,
        }
    }

    /// Number of bytes [`FrameSender::seal_into`] appends for `command_len`.
    pub fn sealed_len(command_len: usize) -> usize {
        FRAME_HEADER_LEN + command_len + TAG_LEN
    }

    /// Appends the frame for `command` to `out` and rekeys.
    pub fn seal_into(&mut self, command: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        if self.poisoned {
            return Err(FrameError::Poisoned);
        }
        if command.len() > MAX_COMMAND_LEN {
            return Err(FrameError::CommandTooLarge(command.len()));
        }
        let ct_len = (command.len() + TAG_LEN) as u32;
        let start = out.len();
        out.reserve(Self::sealed_len(command.len()));
        out.extend_from_slice(&ct_len.to_be_bytes());
        let r = (|| {
            let tag = self.cs.encrypt_in_place(&[], &mut out[start..start + 4])?;
            out.extend_from_slice(&tag);
            let body = out.len();
            out.extend_from_slice(command);
            let tag = self.cs.encrypt_in_place(&[], &mut out[body..])?;
            out.extend_from_slice(&tag);
            Ok(())
        })();
        match r {
            Ok(()) => {
                self.cs.rekey();
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                self.poisoned = true;
                Err(FrameError::Body(e))
            }
        }
    }

    /// The frame for `command` as a new vector.
    pub fn seal(&mut self, command: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        self.seal_into(command, &mut out)?;
        Ok(out)
    }
}

/// Decodes frames from received bytes, fed in chunks of any size.
///
/// Memory is bounded: at most one frame (≤ 20 + 1,048,576 bytes) plus what
/// the caller pushes at once is buffered.
#[derive(Debug)]
pub struct FrameDecoder {
    cs: CipherState,
    buf: Vec<u8>,
    /// Length of the body being waited for, once its header is decrypted.
    body_len: Option<usize>,
    poisoned: bool,
}

impl FrameDecoder {
    /// From the receiving cipher state of a completed handshake.
    pub fn new(cs: CipherState) -> Self {
        FrameDecoder {
            cs,
            buf: Vec::new(),
            body_len: None,
            poisoned: false,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The input buffer, for reading from a socket straight into it
    /// (e.g. `AsyncReadExt::read_buf`). Only append to it.
    pub fn input_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Bytes still missing before the next step can be decoded.
    pub fn wanted(&self) -> usize {
        let need = self.body_len.unwrap_or(FRAME_HEADER_LEN);
        need.saturating_sub(self.buf.len())
    }

    /// Whether part of a frame has been received (an end of stream now would
    /// be a truncation rather than a clean close).
    pub fn is_mid_frame(&self) -> bool {
        self.body_len.is_some() || !self.buf.is_empty()
    }

    /// Whether an error has made the decoder unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Decodes the next command if a whole frame is buffered: `Ok(None)` means
    /// more bytes are needed. After an error every call fails.
    pub fn decode(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.poisoned {
            return Err(FrameError::Poisoned);
        }
        let r = self.decode_inner();
        if r.is_err() {
            self.poisoned = true;
            self.buf = Vec::new();
        }
        r
    }

    fn decode_inner(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let body_len = match self.body_len {
            Some(n) => n,
            None => {
                if self.buf.len() < FRAME_HEADER_LEN {
                    return Ok(None);
                }
                let mut hdr = [0u8; FRAME_HEADER_LEN];
                hdr.copy_from_slice(&self.buf[..FRAME_HEADER_LEN]);
                self.cs
                    .decrypt_in_place(&[], &mut hdr)
                    .map_err(FrameError::Header)?;
                let ct_len = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
                if (ct_len as usize) < TAG_LEN || ct_len as usize > MAX_CIPHERTEXT_LEN {
                    return Err(FrameError::BadLength(ct_len));
                }
                self.buf.drain(..FRAME_HEADER_LEN);
                self.body_len = Some(ct_len as usize);
                ct_len as usize
            }
        };
        if self.buf.len() < body_len {
            return Ok(None);
        }
        let mut body = if self.buf.len() == body_len {
            std::mem::take(&mut self.buf)
        } else {
            let rest = self.buf.split_off(body_len);
            std::mem::replace(&mut self.buf, rest)
        };
        let n = self
            .cs
            .decrypt_in_place(&[], &mut body)
            .map_err(FrameError::Body)?;
        body.truncate(n);
        self.cs.rekey();
        self.body_len = None;
        Ok(Some(body))
    }
}

/// True if `cmd` is a well-formed NoOp command (`00 00 00000000`, zero padding).
pub fn is_noop(cmd: &[u8]) -> bool {
    is_empty_command(cmd, 0)
}

/// True if `cmd` is a well-formed Disconnect command (`01 00 00000000`, zero padding).
pub fn is_disconnect(cmd: &[u8]) -> bool {
    is_empty_command(cmd, 1)
}

fn is_empty_command(cmd: &[u8], id: u8) -> bool {
    cmd.len() >= COMMAND_HEADER_LEN && cmd[0] == id && cmd[1..].iter().all(|&b| b == 0)
}

/// The NoOp command plaintext.
pub const NOOP: [u8; 6] = [0, 0, 0, 0, 0, 0];
/// The Disconnect command plaintext.
pub const DISCONNECT: [u8; 6] = [1, 0, 0, 0, 0, 0];

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (FrameSender, FrameDecoder) {
        (
            FrameSender::new(CipherState::new([3; 32], 0)),
            FrameDecoder::new(CipherState::new([3; 32], 0)),
        )
    }

    #[test]
    fn sizes_match_the_reference() {
        let (mut tx, _) = pair();
        assert_eq!(tx.seal(&NOOP).unwrap().len(), 42);
        assert_eq!(tx.seal(&[0; 14]).unwrap().len(), 50);
        assert_eq!(tx.seal(&[0; 6 + 51_676]).unwrap().len(), 51_718);
        assert_eq!(tx.seal(&[0; 51_244]).unwrap().len(), 51_280);
    }

    #[test]
    fn decodes_byte_by_byte_and_in_bulk() {
        let (mut tx, mut rx) = pair();
        let cmds: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 10 + 1000 * i]).collect();
        let mut wire = Vec::new();
        for c in &cmds {
            tx.seal_into(c, &mut wire).unwrap();
        }
        let mut got = Vec::new();
        for b in &wire[..wire.len() / 2] {
            rx.push(std::slice::from_ref(b));
            while let Some(c) = rx.decode().unwrap() {
                got.push(c);
            }
        }
        rx.push(&wire[wire.len() / 2..]);
        while let Some(c) = rx.decode().unwrap() {
            got.push(c);
        }
        assert_eq!(got, cmds);
        assert!(!rx.is_mid_frame());
    }

    #[test]
    fn rekey_happens_per_frame() {
        // Same command twice gives different bytes, and each frame consumes two nonces.
        let (mut tx, _) = pair();
        let a = tx.seal(&NOOP).unwrap();
        let b = tx.seal(&NOOP).unwrap();
        assert_ne!(a, b);
        assert_eq!(tx.cs.nonce(), 4);
    }

    #[test]
    fn tampering_poisons() {
        let (mut tx, mut rx) = pair();
        let mut f = tx.seal(&NOOP).unwrap();
        f[25] ^= 1;
        rx.push(&f);
        assert!(matches!(
            rx.decode(),
            Err(FrameError::Body(CipherError::BadTag))
        ));
        assert!(rx.is_poisoned());
        assert_eq!(rx.decode(), Err(FrameError::Poisoned));

        let (mut tx, mut rx) = pair();
        let mut f = tx.seal(&NOOP).unwrap();
        f[0] ^= 1;
        rx.push(&f);
        assert!(matches!(
            rx.decode(),
            Err(FrameError::Header(CipherError::BadTag))
        ));
    }

    #[test]
    fn maximum_command_length_exactly() {
        let (mut tx, mut rx) = pair();
        let big = vec![0x5a; MAX_COMMAND_LEN];
        let f = tx.seal(&big).unwrap();
        assert_eq!(f.len(), FRAME_HEADER_LEN + MAX_CIPHERTEXT_LEN);
        rx.push(&f);
        assert_eq!(rx.decode().unwrap().unwrap(), big);
        assert_eq!(
            tx.seal(&vec![0; MAX_COMMAND_LEN + 1]),
            Err(FrameError::CommandTooLarge(MAX_COMMAND_LEN + 1))
        );
        // The refused command did not consume nonces: the next frame still decodes.
        rx.push(&tx.seal(&NOOP).unwrap());
        assert_eq!(rx.decode().unwrap().unwrap(), NOOP);
    }

    #[test]
    fn announced_length_bounds() {
        for (ct_len, ok) in [
            (15u32, false),
            (16, true),
            (MAX_CIPHERTEXT_LEN as u32, true),
            (MAX_CIPHERTEXT_LEN as u32 + 1, false),
            (u32::MAX, false),
        ] {
            let mut cs = CipherState::new([3; 32], 0);
            let hdr = cs.encrypt(&[], &ct_len.to_be_bytes()).unwrap();
            let mut rx = FrameDecoder::new(CipherState::new([3; 32], 0));
            rx.push(&hdr);
            let r = rx.decode();
            if ok {
                assert_eq!(r, Ok(None), "{ct_len}");
                assert_eq!(rx.wanted(), ct_len as usize);
            } else {
                assert_eq!(r, Err(FrameError::BadLength(ct_len)));
            }
        }
    }

    #[test]
    fn command_predicates() {
        assert!(is_noop(&NOOP));
        assert!(is_noop(&[0, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_noop(&[0, 0, 0, 0, 0, 1]));
        assert!(!is_noop(&[0, 0, 0, 0, 0]));
        assert!(is_disconnect(&DISCONNECT));
        assert!(!is_disconnect(&NOOP));
    }
}
