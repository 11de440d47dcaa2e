#![no_main]
//! The IMAP session's input side on arbitrary bytes, as the session runs
//! it: imap-codec's fragmentizer (bounded) split at an input-chosen point,
//! every complete message decoded as a command; for FETCH and SEARCH, our
//! own code on the input taken as a message: MIME structure, every section
//! asked for, partial ranges, and the search keys. No panics, progress on
//! every step, sections always within the message.
use imap_codec::fragmentizer::Fragmentizer;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::CommandCodec;
use libfuzzer_sys::fuzz_target;
use mailproxyd::imap::{mime, search};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let parsed = mime::parse(data);
    let mut f = Fragmentizer::new(4096);
    for piece in [&data[..split], &data[split..]] {
        f.enqueue_bytes(piece);
        while f.progress().is_some() {
            if !f.is_message_complete() {
                continue;
            }
            assert!(f.message_bytes().len() <= 4096);
            let Ok(cmd) = f.decode_message(&CommandCodec::default()) else {
                continue;
            };
            match cmd.body {
                CommandBody::Fetch {
                    macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(names),
                    ..
                } => {
                    for n in names {
                        if let MessageDataItemName::BodyExt { section, .. } = n {
                            let s = mime::section(data, &parsed.root, &section);
                            // Only HEADER.FIELDS builds new bytes (plus a CRLF).
                            assert!(s.len() <= data.len() + 2);
                        }
                    }
                }
                CommandBody::Search { criteria, .. } => {
                    let key = SearchKey::And(criteria);
                    let raw = mailproxyd::imap::cache::body(data.to_vec());
                    let mut load = || Some(raw.clone());
                    let mut c = search::Candidate {
                        seq: 1,
                        uid: 7,
                        count: 3,
                        max_uid: 9,
                        flags: &["\\Seen".to_owned()],
                        size: data.len() as u64,
                        internal: 1_795_000_000,
                        raw: &mut load,
                    };
                    let _ = search::matches(&key, &mut c);
                }
                _ => {}
            }
        }
    }
});
