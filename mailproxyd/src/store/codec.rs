//! A tiny length-prefixed binary encoding for the records kept in the store.
//!
//! Every read is bounds-checked against the remaining input, so a damaged
//! record yields [`CodecError`] and never a panic or a large allocation.

/// The record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed store record")]
pub struct CodecError;

/// Appends fields to a byte vector.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer with a version byte already in place.
    pub fn new(version: u8) -> Self {
        Writer { buf: vec![version] }
    }
    /// Appends a u8.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a big-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a length-prefixed byte string.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
        self
    }
    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    /// The encoded record.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields back, failing on truncation.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading; checks the version byte.
    pub fn new(input: &'a [u8], version: u8) -> Result<Self, CodecError> {
        match input.split_first() {
            Some((&v, rest)) if v == version => Ok(Reader { rest }),
            _ => Err(CodecError),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.rest.len() < n {
            return Err(CodecError);
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }
    /// Reads a u8.
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    /// Reads a big-endian u32.
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Reads a big-endian u64.
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    /// Reads a length-prefixed byte string (the length is checked against the input).
    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// Reads a length-prefixed UTF-8 string.
    pub fn string(&mut self) -> Result<String, CodecError> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| CodecError)
    }
    /// Fails unless every byte was consumed.
    pub fn end(self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::new(7);
        w.u8(1).u32(2).u64(3).bytes(b"abc").str("d");
        let enc = w.finish();
        let mut r = Reader::new(&enc, 7).unwrap();
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u32().unwrap(), 2);
        assert_eq!(r.u64().unwrap(), 3);
        assert_eq!(r.bytes().unwrap(), b"abc");
        assert_eq!(r.string().unwrap(), "d");
        r.end().unwrap();
        for cut in 0..enc.len() {
            let res = (|| {
                let mut r = Reader::new(&enc[..cut], 7)?;
                r.u8()?;
                r.u32()?;
                r.u64()?;
                r.bytes()?;
                r.string()?;
                r.end()
            })();
            assert_eq!(res, Err(CodecError), "cut at {cut}");
        }
        assert!(Reader::new(&enc, 8).is_err());
        // A huge declared length does not allocate; it fails.
        let bad = [7u8, 0xff, 0xff, 0xff, 0xff];
        assert!(Reader::new(&bad, 7).unwrap().bytes().is_err());
    }
}
