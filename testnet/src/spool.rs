//! Per-user spools at a provider (§4.9), kept on disk so that a provider
//! restart loses nothing: one file per entry, named by a growing sequence
//! number, written to a temporary name, synced and renamed into place.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use katzenpost::geometry::{
    FORWARD_PAYLOAD_LENGTH, PAYLOAD_TAG_LENGTH, SURB_ID_LENGTH, USER_FORWARD_PAYLOAD_LENGTH,
};

/// What a spool holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolEntry {
    /// A user block: the 50,642-byte user payload of a forward packet.
    Message(Vec<u8>),
    /// A SURB reply: its SURB id and the 51,216-byte still-encrypted payload.
    SurbReply {
        surb_id: [u8; SURB_ID_LENGTH],
        payload: Vec<u8>,
    },
}

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("spool entry {path} is corrupt")]
    Corrupt { path: PathBuf },
    #[error("entry has the wrong size for its kind")]
    BadEntry,
}

const KIND_MESSAGE: u8 = 0;
const KIND_SURB_REPLY: u8 = 1;
const SURB_REPLY_PAYLOAD: usize = PAYLOAD_TAG_LENGTH + FORWARD_PAYLOAD_LENGTH;

impl SpoolEntry {
    fn encode(&self) -> Result<Vec<u8>, SpoolError> {
        match self {
            SpoolEntry::Message(p) if p.len() == USER_FORWARD_PAYLOAD_LENGTH => {
                let mut v = Vec::with_capacity(1 + p.len());
                v.push(KIND_MESSAGE);
                v.extend_from_slice(p);
                Ok(v)
            }
            SpoolEntry::SurbReply { surb_id, payload } if payload.len() == SURB_REPLY_PAYLOAD => {
                let mut v = Vec::with_capacity(1 + SURB_ID_LENGTH + payload.len());
                v.push(KIND_SURB_REPLY);
                v.extend_from_slice(surb_id);
                v.extend_from_slice(payload);
                Ok(v)
            }
            _ => Err(SpoolError::BadEntry),
        }
    }

    fn decode(b: &[u8]) -> Option<Self> {
        match b.split_first()? {
            (&KIND_MESSAGE, rest) if rest.len() == USER_FORWARD_PAYLOAD_LENGTH => {
                Some(SpoolEntry::Message(rest.to_vec()))
            }
            (&KIND_SURB_REPLY, rest) if rest.len() == SURB_ID_LENGTH + SURB_REPLY_PAYLOAD => {
                let (id, payload) = rest.split_at(SURB_ID_LENGTH);
                Some(SpoolEntry::SurbReply {
                    surb_id: id.try_into().ok()?,
                    payload: payload.to_vec(),
                })
            }
            _ => None,
        }
    }
}

/// One user's spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    next: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Spool {
    /// Opens (creating) the spool in `dir`.
    pub fn open(dir: &Path) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let next = Self::sequence_numbers(dir)?.last().map_or(0, |n| n + 1);
        Ok(Self {
            dir: dir.to_path_buf(),
            next,
        })
    }

    fn sequence_numbers(dir: &Path) -> Result<Vec<u64>, SpoolError> {
        let mut v = Vec::new();
        for e in fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            if let Some(n) = e
                .file_name()
                .to_str()
                .and_then(|s| s.strip_suffix(".entry"))
                .and_then(|s| s.parse().ok())
            {
                v.push(n);
            }
        }
        v.sort_unstable();
        Ok(v)
    }

    fn path_of(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:020}.entry"))
    }

    /// Appends an entry durably.
    pub fn push(&mut self, entry: &SpoolEntry) -> Result<(), SpoolError> {
        let bytes = entry.encode()?;
        let path = self.path_of(self.next);
        let tmp = self.dir.join(format!("{:020}.tmp", self.next));
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        self.next += 1;
        Ok(())
    }

    /// The head entry and whether more follow it.
    pub fn head(&self) -> Result<Option<(SpoolEntry, bool)>, SpoolError> {
        let seq = Self::sequence_numbers(&self.dir)?;
        let Some(&first) = seq.first() else {
            return Ok(None);
        };
        let path = self.path_of(first);
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let entry = SpoolEntry::decode(&bytes).ok_or(SpoolError::Corrupt { path })?;
        Ok(Some((entry, seq.len() > 1)))
    }

    /// Removes the head entry, if any.
    pub fn pop(&mut self) -> Result<(), SpoolError> {
        if let Some(&first) = Self::sequence_numbers(&self.dir)?.first() {
            let path = self.path_of(first);
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Number of entries waiting.
    pub fn len(&self) -> Result<usize, SpoolError> {
        Ok(Self::sequence_numbers(&self.dir)?.len())
    }

    /// Whether the spool is empty.
    pub fn is_empty(&self) -> Result<bool, SpoolError> {
        Ok(self.len()? == 0)
    }
}

/// What to answer a `RetrieveMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retrieved {
    /// The spool is empty: `MessageEmpty{seq}`.
    Empty { sequence: u32 },
    /// An entry: `Message` or `MessageACK` with this hint (1 if more follow).
    Entry {
        sequence: u32,
        entry: SpoolEntry,
        queue_hint: u8,
    },
}

/// A protocol error: the client asked for a sequence number out of order.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("RetrieveMessage sequence {got}, expected {expected} or {}", expected.wrapping_add(1))]
pub struct SequenceError {
    pub got: u32,
    pub expected: u32,
}

/// One client session's retrieval counter (§4.9): `seq == r` returns the
/// head without removing it; `seq == r + 1` removes the head first.
#[derive(Debug, Default)]
pub struct Retrieval {
    r: u32,
}

impl Retrieval {
    /// Decides what `RetrieveMessage{seq}` does: `Ok(true)` = pop the head first.
    pub fn advance(&mut self, seq: u32) -> Result<bool, SequenceError> {
        if seq == self.r {
            Ok(false)
        } else if seq == self.r.wrapping_add(1) {
            self.r = seq;
            Ok(true)
        } else {
            Err(SequenceError {
                got: seq,
                expected: self.r,
            })
        }
    }

    /// Handles `RetrieveMessage{seq}` against `spool`.
    pub fn retrieve(
        &mut self,
        seq: u32,
        spool: &mut Spool,
    ) -> Result<Result<Retrieved, SequenceError>, SpoolError> {
        let pop = match self.advance(seq) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        if pop {
            spool.pop()?;
        }
        Ok(Ok(match spool.head()? {
            None => Retrieved::Empty { sequence: seq },
            Some((entry, more)) => Retrieved::Entry {
                sequence: seq,
                entry,
                queue_hint: u8::from(more),
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(b: u8) -> SpoolEntry {
        SpoolEntry::Message(vec![b; USER_FORWARD_PAYLOAD_LENGTH])
    }

    #[test]
    fn entries_survive_reopen_in_order() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path()).unwrap();
        s.push(&msg(1)).unwrap();
        s.push(&SpoolEntry::SurbReply {
            surb_id: [9; 16],
            payload: vec![2; SURB_REPLY_PAYLOAD],
        })
        .unwrap();
        drop(s);
        let mut s = Spool::open(d.path()).unwrap();
        assert_eq!(s.len().unwrap(), 2);
        assert_eq!(s.head().unwrap(), Some((msg(1), true)));
        s.pop().unwrap();
        let (e, more) = s.head().unwrap().unwrap();
        assert!(matches!(e, SpoolEntry::SurbReply { surb_id, .. } if surb_id == [9; 16]));
        assert!(!more);
        s.push(&msg(3)).unwrap();
        s.pop().unwrap();
        assert_eq!(s.head().unwrap(), Some((msg(3), false)));
    }

    #[test]
    fn wrong_sizes_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path()).unwrap();
        assert!(matches!(
            s.push(&SpoolEntry::Message(vec![0; 10])),
            Err(SpoolError::BadEntry)
        ));
        assert!(s.is_empty().unwrap());
    }

    #[test]
    fn corrupt_entry_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(format!("{:020}.entry", 0)), b"garbage").unwrap();
        let s = Spool::open(d.path()).unwrap();
        assert!(matches!(s.head(), Err(SpoolError::Corrupt { .. })));
    }

    #[test]
    fn retrieval_follows_the_2019_sequence_rules() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path()).unwrap();
        s.push(&msg(1)).unwrap();
        s.push(&msg(2)).unwrap();
        let mut r = Retrieval::default();
        // seq 0: head, not removed; asking again returns it again.
        let a = r.retrieve(0, &mut s).unwrap().unwrap();
        assert_eq!(
            a,
            Retrieved::Entry {
                sequence: 0,
                entry: msg(1),
                queue_hint: 1
            }
        );
        assert_eq!(r.retrieve(0, &mut s).unwrap().unwrap(), a);
        // seq 1: removes the head, returns the next, no more after it.
        let b = r.retrieve(1, &mut s).unwrap().unwrap();
        assert_eq!(
            b,
            Retrieved::Entry {
                sequence: 1,
                entry: msg(2),
                queue_hint: 0
            }
        );
        // seq 2: removes it, spool empty.
        assert_eq!(
            r.retrieve(2, &mut s).unwrap().unwrap(),
            Retrieved::Empty { sequence: 2 }
        );
        // Out of order: protocol error, nothing removed.
        s.push(&msg(3)).unwrap();
        assert_eq!(
            r.retrieve(7, &mut s).unwrap(),
            Err(SequenceError {
                got: 7,
                expected: 2
            })
        );
        assert_eq!(s.len().unwrap(), 1);
        // A new session starts at 0 again: the entry is delivered again (at least once).
        let mut r2 = Retrieval::default();
        assert_eq!(
            r2.retrieve(0, &mut s).unwrap().unwrap(),
            Retrieved::Entry {
                sequence: 0,
                entry: msg(3),
                queue_hint: 0
            }
        );
    }
}
