//! The CBOR certificate envelope (core `crypto/cert`, §5.2).
//!
//! A certificate is a CBOR map with the text keys `Certified` (bytes),
//! `Expiration` (int, Unix seconds), `KeyType` (text), `Signatures` (array of
//! `{Identity, Payload}` maps, sorted by Identity) and `Version` (uint, 0).
//! Each signature is Ed25519 over
//! `u32le(Version) ‖ i64le(Expiration) ‖ KeyType ‖ Certified`.
//!
//! Parsing is lenient about the CBOR form (any key order, non-shortest
//! integers, indefinite lengths, unknown keys skipped); emission is canonical
//! (bytewise-sorted keys, shortest integers), as ugorji's `Canonical` mode.
//! Nothing is allocated from a declared length: byte strings are bounded by
//! the input and arrays grow one parsed element at a time.

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

/// The only certificate version.
pub const CERT_VERSION: u32 = 0;
/// The key type string of Ed25519 certificates.
pub const KEY_TYPE_ED25519: &str = "ed25519";
/// Nesting depth accepted when skipping unknown CBOR values.
const MAX_DEPTH: usize = 16;

/// One signature of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signer's public key (32 bytes for Ed25519).
    pub identity: Vec<u8>,
    /// The signature (64 bytes for Ed25519).
    pub payload: Vec<u8>,
}

/// A decoded certificate (not necessarily verified).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Certificate {
    /// Must be [`CERT_VERSION`] to verify.
    pub version: u32,
    /// Unix seconds after which the certificate is expired.
    pub expiration: i64,
    /// `ed25519`.
    pub key_type: String,
    /// The payload (document or descriptor JSON).
    pub certified: Vec<u8>,
    /// Signatures, kept sorted by identity when emitted.
    pub signatures: Vec<Signature>,
}

/// Why a certificate could not be decoded or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The CBOR is malformed or has the wrong shape.
    #[error("certificate CBOR: {0}")]
    Cbor(&'static str),
    /// Bytes follow the certificate map.
    #[error("certificate CBOR: {0} trailing bytes")]
    TrailingBytes(usize),
    /// A known key appears twice.
    #[error("certificate CBOR: duplicate key {0}")]
    DuplicateKey(&'static str),
    /// Version is not 0.
    #[error("certificate version {0}, expected 0")]
    Version(u32),
    /// Expiration is before the given time.
    #[error("certificate expired at {expiration} (now {now})")]
    Expired {
        /// The certificate's expiration.
        expiration: i64,
        /// The clock used.
        now: u64,
    },
    /// KeyType is empty.
    #[error("certificate KeyType is empty")]
    EmptyKeyType,
    /// Certified is empty.
    #[error("certificate Certified payload is empty")]
    EmptyCertified,
    /// No signature by the requested key.
    #[error("certificate has no signature by the given key")]
    NoSignature,
    /// The signature by the requested key is wrong.
    #[error("certificate signature does not verify")]
    BadSignature,
}

impl Certificate {
    /// An unsigned version-0 Ed25519 certificate over `certified`.
    pub fn new(certified: Vec<u8>, expiration: i64) -> Self {
        Certificate {
            version: CERT_VERSION,
            expiration,
            key_type: KEY_TYPE_ED25519.to_owned(),
            certified,
            signatures: Vec::new(),
        }
    }

    /// Decodes a certificate leniently (no verification).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let cert = decode_certificate(&mut r)?;
        if r.pos != bytes.len() {
            return Err(CertError::TrailingBytes(bytes.len() - r.pos));
        }
        Ok(cert)
    }

    /// The canonical CBOR encoding (signatures sorted by identity).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.certified.len() + 64 + 110 * self.signatures.len());
        put_head(&mut out, 5, 5);
        put_text(&mut out, "Certified");
        put_bytes(&mut out, &self.certified);
        put_text(&mut out, "Expiration");
        if self.expiration >= 0 {
            put_head(&mut out, 0, self.expiration as u64);
        } else {
            put_head(&mut out, 1, !(self.expiration as u64));
        }
        put_text(&mut out, "KeyType");
        put_text(&mut out, &self.key_type);
        put_text(&mut out, "Signatures");
        put_head(&mut out, 4, self.signatures.len() as u64);
        for s in self.sorted_signatures() {
            put_head(&mut out, 5, 2);
            put_text(&mut out, "Identity");
            put_bytes(&mut out, &s.identity);
            put_text(&mut out, "Payload");
            put_bytes(&mut out, &s.payload);
        }
        put_text(&mut out, "Version");
        put_head(&mut out, 0, u64::from(self.version));
        out
    }

    fn sorted_signatures(&self) -> Vec<&Signature> {
        let mut v: Vec<&Signature> = self.signatures.iter().collect();
        v.sort_by(|a, b| a.identity.cmp(&b.identity));
        v
    }

    /// The signed message: `u32le(Version) ‖ i64le(Expiration) ‖ KeyType ‖ Certified`.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(12 + self.key_type.len() + self.certified.len());
        m.extend_from_slice(&self.version.to_le_bytes());
        m.extend_from_slice(&self.expiration.to_le_bytes());
        m.extend_from_slice(self.key_type.as_bytes());
        m.extend_from_slice(&self.certified);
        m
    }

    /// Adds (or replaces) the signature of `key` and keeps signatures sorted.
    pub fn add_signature(&mut self, key: &SigningKey) {
        let identity = key.verifying_key().to_bytes().to_vec();
        let payload = key.sign(&self.signed_message()).to_bytes().to_vec();
        self.signatures.retain(|s| s.identity != identity);
        self.signatures.push(Signature { identity, payload });
        self.signatures.sort_by(|a, b| a.identity.cmp(&b.identity));
    }

    /// The signature made by `identity`, if any.
    pub fn signature_by(&self, identity: &[u8]) -> Option<&Signature> {
        self.signatures.iter().find(|s| s.identity == identity)
    }

    /// Checks version, expiry against `now_unix` and non-empty fields: the
    /// parts of core `cert.Verify` that do not depend on the signer.
    pub fn check_envelope(&self, now_unix: u64) -> Result<(), CertError> {
        if self.version != CERT_VERSION {
            return Err(CertError::Version(self.version));
        }
        if i128::from(self.expiration) < i128::from(now_unix) {
            return Err(CertError::Expired {
                expiration: self.expiration,
                now: now_unix,
            });
        }
        if self.key_type.is_empty() {
            return Err(CertError::EmptyKeyType);
        }
        if self.certified.is_empty() {
            return Err(CertError::EmptyCertified);
        }
        Ok(())
    }

    /// Checks the envelope ([`Certificate::check_envelope`]) and the
    /// signature of `key` (core `cert.Verify`; a bad signature is an error).
    pub fn verify(&self, key: &VerifyingKey, now_unix: u64) -> Result<(), CertError> {
        self.check_envelope(now_unix)?;
        let sig = self
            .signature_by(key.as_bytes())
            .ok_or(CertError::NoSignature)?;
        if signature_verifies(key, &self.signed_message(), &sig.payload) {
            Ok(())
        } else {
            Err(CertError::BadSignature)
        }
    }
}

/// Whether `payload` is a valid Ed25519 signature of `message` by `key`
/// (cofactorless RFC 8032 verification, as Go's crypto/ed25519).
pub fn signature_verifies(key: &VerifyingKey, message: &[u8], payload: &[u8]) -> bool {
    <[u8; 64]>::try_from(payload)
        .map(|s| ed25519_dalek::Signature::from_bytes(&s))
        .is_ok_and(|s| key.verify(message, &s).is_ok())
}

/// Signs `certified` with one key: the canonical certificate bytes.
pub fn sign(key: &SigningKey, certified: &[u8], expiration: i64) -> Vec<u8> {
    let mut c = Certificate::new(certified.to_vec(), expiration);
    c.add_signature(key);
    c.to_bytes()
}

/// Verifies `bytes` for `key` at `now_unix` and returns the certified payload.
pub fn verify(bytes: &[u8], key: &VerifyingKey, now_unix: u64) -> Result<Vec<u8>, CertError> {
    let c = Certificate::from_bytes(bytes)?;
    c.verify(key, now_unix)?;
    Ok(c.certified)
}

/// The certified payload without any verification (core `cert.GetCertified`).
pub fn certified_unverified(bytes: &[u8]) -> Result<Vec<u8>, CertError> {
    Ok(Certificate::from_bytes(bytes)?.certified)
}

// ---------------------------------------------------------------- encoding

fn put_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= 0xff {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    put_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

// ---------------------------------------------------------------- decoding

/// The argument of a CBOR head: a value/length, or indefinite length.
#[derive(Clone, Copy)]
enum Arg {
    Val(u64),
    Indefinite,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

const BREAK: u8 = 0xff;
const NULL: u8 = 0xf6;

impl<'a> Reader<'a> {
    fn peek(&self) -> Result<u8, CertError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(CertError::Cbor("truncated"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CertError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(CertError::Cbor("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads a head: (major type, argument).
    fn head(&mut self) -> Result<(u8, Arg), CertError> {
        let b = self.take(1)?[0];
        let major = b >> 5;
        let info = b & 0x1f;
        let arg = match info {
            0..=23 => Arg::Val(u64::from(info)),
            24 => Arg::Val(u64::from(self.take(1)?[0])),
            25 => Arg::Val(u64::from(u16::from_be_bytes(
                self.take(2)?.try_into().expect("2 bytes"),
            ))),
            26 => Arg::Val(u64::from(u32::from_be_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            ))),
            27 => Arg::Val(u64::from_be_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            28..=30 => return Err(CertError::Cbor("reserved additional information")),
            _ => {
                if matches!(major, 0 | 1 | 6) {
                    return Err(CertError::Cbor("indefinite length on an integer or tag"));
                }
                Arg::Indefinite
            }
        };
        Ok((major, arg))
    }

    fn is_null(&mut self) -> Result<bool, CertError> {
        if self.peek()? == NULL {
            self.pos += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn at_break(&mut self) -> Result<bool, CertError> {
        if self.peek()? == BREAK {
            self.pos += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// A byte or text string (major 2 or 3), definite or chunked.
    fn string(&mut self, want_major: u8) -> Result<Vec<u8>, CertError> {
        let (major, arg) = self.head()?;
        if major != want_major {
            return Err(CertError::Cbor(if want_major == 2 {
                "expected a byte string"
            } else {
                "expected a text string"
            }));
        }
        match arg {
            Arg::Val(n) => {
                let n = usize::try_from(n).map_err(|_| CertError::Cbor("truncated"))?;
                Ok(self.take(n)?.to_vec())
            }
            Arg::Indefinite => {
                let mut out = Vec::new();
                while !self.at_break()? {
                    let (m, a) = self.head()?;
                    match (m, a) {
                        (m, Arg::Val(n)) if m == want_major => {
                            let n = usize::try_from(n).map_err(|_| CertError::Cbor("truncated"))?;
                            out.extend_from_slice(self.take(n)?);
                        }
                        _ => return Err(CertError::Cbor("bad chunk in an indefinite string")),
                    }
                }
                Ok(out)
            }
        }
    }

    fn text(&mut self) -> Result<String, CertError> {
        String::from_utf8(self.string(3)?).map_err(|_| CertError::Cbor("text is not UTF-8"))
    }

    /// An integer (major 0 or 1) as i128.
    fn int(&mut self) -> Result<i128, CertError> {
        match self.head()? {
            (0, Arg::Val(v)) => Ok(i128::from(v)),
            (1, Arg::Val(v)) => Ok(-1 - i128::from(v)),
            _ => Err(CertError::Cbor("expected an integer")),
        }
    }

    /// Skips one data item of any type.
    fn skip(&mut self, depth: usize) -> Result<(), CertError> {
        if depth > MAX_DEPTH {
            return Err(CertError::Cbor("nesting too deep"));
        }
        let start = self.pos;
        let (major, arg) = self.head()?;
        match (major, arg) {
            (0 | 1, _) => Ok(()),
            (2 | 3, _) => {
                self.pos = start;
                self.string(major).map(|_| ())
            }
            (4, Arg::Val(n)) => {
                for _ in 0..n {
                    self.skip(depth + 1)?;
                }
                Ok(())
            }
            (5, Arg::Val(n)) => {
                for _ in 0..n {
                    self.skip(depth + 1)?;
                    self.skip(depth + 1)?;
                }
                Ok(())
            }
            (4, Arg::Indefinite) => {
                while !self.at_break()? {
                    self.skip(depth + 1)?;
                }
                Ok(())
            }
            (5, Arg::Indefinite) => {
                while !self.at_break()? {
                    self.skip(depth + 1)?;
                    self.skip(depth + 1)?;
                }
                Ok(())
            }
            (6, _) => self.skip(depth + 1),
            (7, Arg::Indefinite) => Err(CertError::Cbor("unexpected break")),
            (7, Arg::Val(_)) => {
                // Simple values and floats: the head already consumed the
                // argument bytes (1, 2, 4 or 8 of them).
                Ok(())
            }
            _ => Err(CertError::Cbor("unexpected item")),
        }
    }

    /// Starts a map or array of `want_major`: Some(count) or None (indefinite).
    fn container(&mut self, want_major: u8, what: &'static str) -> Result<Option<u64>, CertError> {
        match self.head()? {
            (m, Arg::Val(n)) if m == want_major => Ok(Some(n)),
            (m, Arg::Indefinite) if m == want_major => Ok(None),
            _ => Err(CertError::Cbor(what)),
        }
    }

    /// Whether another entry follows in a container with `remaining` entries.
    fn next_entry(&mut self, remaining: &mut Option<u64>) -> Result<bool, CertError> {
        match remaining {
            Some(0) => Ok(false),
            Some(n) => {
                *n -= 1;
                Ok(true)
            }
            None => Ok(!self.at_break()?),
        }
    }
}

fn decode_certificate(r: &mut Reader<'_>) -> Result<Certificate, CertError> {
    let mut cert = Certificate::default();
    let mut remaining = r.container(5, "certificate is not a map")?;
    let mut seen = [false; 5];
    let mut mark = |i: usize, name: &'static str| -> Result<(), CertError> {
        if std::mem::replace(&mut seen[i], true) {
            Err(CertError::DuplicateKey(name))
        } else {
            Ok(())
        }
    };
    while r.next_entry(&mut remaining)? {
        let key = r.text()?;
        match key.as_str() {
            "Certified" => {
                mark(0, "Certified")?;
                cert.certified = if r.is_null()? {
                    Vec::new()
                } else {
                    r.string(2)?
                };
            }
            "Expiration" => {
                mark(1, "Expiration")?;
                cert.expiration = if r.is_null()? {
                    0
                } else {
                    i64::try_from(r.int()?)
                        .map_err(|_| CertError::Cbor("Expiration out of range"))?
                };
            }
            "KeyType" => {
                mark(2, "KeyType")?;
                cert.key_type = if r.is_null()? {
                    String::new()
                } else {
                    r.text()?
                };
            }
            "Signatures" => {
                mark(3, "Signatures")?;
                if !r.is_null()? {
                    cert.signatures = decode_signatures(r)?;
                }
            }
            "Version" => {
                mark(4, "Version")?;
                cert.version = if r.is_null()? {
                    0
                } else {
                    u32::try_from(r.int()?).map_err(|_| CertError::Cbor("Version out of range"))?
                };
            }
            _ => r.skip(1)?,
        }
    }
    Ok(cert)
}

fn decode_signatures(r: &mut Reader<'_>) -> Result<Vec<Signature>, CertError> {
    let mut remaining = r.container(4, "Signatures is not an array")?;
    let mut sigs = Vec::new();
    while r.next_entry(&mut remaining)? {
        let mut entries = r.container(5, "signature is not a map")?;
        let mut identity = None;
        let mut payload = None;
        while r.next_entry(&mut entries)? {
            let key = r.text()?;
            let slot = match key.as_str() {
                "Identity" => &mut identity,
                "Payload" => &mut payload,
                _ => {
                    r.skip(2)?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(CertError::DuplicateKey(if key == "Identity" {
                    "Identity"
                } else {
                    "Payload"
                }));
            }
            *slot = Some(if r.is_null()? {
                Vec::new()
            } else {
                r.string(2)?
            });
        }
        sigs.push(Signature {
            identity: identity.unwrap_or_default(),
            payload: payload.unwrap_or_default(),
        });
    }
    Ok(sigs)
}
