//! What IMAP needs of a message's MIME structure, computed once per
//! message with mail-parser: BODYSTRUCTURE, ENVELOPE, and the byte ranges
//! of every part (for `BODY[section]`). The ranges index the raw message;
//! nothing here decodes or re-encodes the message's bytes.

use std::borrow::Cow;
use std::ops::Range;

use imap_codec::imap_types::body::{BasicFields, Body, BodyStructure, SpecificFields};
use imap_codec::imap_types::core::{IString, NString};
use imap_codec::imap_types::envelope::{Address, Envelope};
use imap_codec::imap_types::fetch::{Part, Section};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

/// Byte ranges of one MIME part within the raw message.
#[derive(Debug, Clone)]
pub struct Node {
    /// The part's header (with its blank line).
    pub header: Range<usize>,
    /// The part's body.
    pub body: Range<usize>,
    /// Children of a multipart.
    pub children: Vec<Node>,
    /// The message inside a message/rfc822 part.
    pub message: Option<Box<Node>>,
}

/// The structure of one message.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// BODYSTRUCTURE.
    pub structure: BodyStructure<'static>,
    /// ENVELOPE.
    pub envelope: Envelope<'static>,
    /// The part tree.
    pub root: Node,
}

/// Parses `raw` (never fails: unparseable input is one text/plain part).
pub fn parse(raw: &[u8]) -> Parsed {
    match MessageParser::default().parse(raw) {
        Some(m) if !m.parts.is_empty() => Parsed {
            structure: structure(&m, 0, raw, 0),
            envelope: envelope(&m),
            root: node(&m, 0, raw, 0),
        },
        _ => {
            let hdr = crate::message::header_section(raw).len();
            Parsed {
                structure: single(
                    "text",
                    "plain",
                    Vec::new(),
                    raw.len() - hdr,
                    lines(&raw[hdr..]),
                ),
                envelope: empty_envelope(),
                root: Node {
                    header: 0..hdr,
                    body: hdr..raw.len(),
                    children: Vec::new(),
                    message: None,
                },
            }
        }
    }
}

/// What the offsets of nested message `m` are relative to: a nested
/// message that mail-parser could parse in place (a slice of `raw`) keeps
/// the outer offsets (`base`); one it had to decode first (a base64 or
/// quoted-printable message/rfc822 part) has offsets into its decoded
/// bytes, which are mapped onto the part's body (`fallback`) as well as
/// can be, and clamped.
fn nested_base(m: &Message<'_>, raw: &[u8], base: usize, fallback: usize) -> usize {
    let nested = m.raw_message();
    let (start, end) = (raw.as_ptr() as usize, raw.as_ptr() as usize + raw.len());
    let p = nested.as_ptr() as usize;
    if p >= start && p + nested.len() <= end {
        base
    } else {
        fallback
    }
}

fn clamp(r: Range<usize>, len: usize) -> Range<usize> {
    let s = r.start.min(len);
    s..r.end.clamp(s, len)
}

fn node(m: &Message<'_>, id: usize, raw: &[u8], base: usize) -> Node {
    let p = &m.parts[id];
    let header = clamp(
        base + p.offset_header as usize..base + p.offset_body as usize,
        raw.len(),
    );
    let body = clamp(
        base + p.offset_body as usize..base + p.offset_end as usize,
        raw.len(),
    );
    let mut n = Node {
        header,
        body: body.clone(),
        children: Vec::new(),
        message: None,
    };
    match &p.body {
        PartType::Multipart(ids) => {
            n.children = ids
                .iter()
                .filter(|&&c| (c as usize) < m.parts.len() && c as usize != id)
                .map(|&c| node(m, c as usize, raw, base))
                .collect();
        }
        PartType::Message(inner) if !inner.parts.is_empty() => {
            let b = nested_base(inner, raw, base, body.start);
            n.message = Some(Box::new(node(inner, 0, raw, b)));
        }
        _ => {}
    }
    n
}

fn lines(b: &[u8]) -> u32 {
    b.iter().filter(|&&c| c == b'\n').count() as u32
}

/// An IMAP string for `s` (control characters an IMAP string cannot carry
/// are dropped).
pub fn istr(s: &str) -> IString<'static> {
    if let Ok(v) = IString::try_from(s.to_owned()) {
        return v;
    }
    let clean: String = s.chars().filter(|c| *c != '\0').collect();
    IString::try_from(clean).unwrap_or_else(|_| IString::try_from("").expect("empty quoted"))
}

fn nstr(s: Option<&str>) -> NString<'static> {
    NString(s.map(istr))
}

fn single(
    ty: &str,
    subtype: &str,
    params: Vec<(IString<'static>, IString<'static>)>,
    size: usize,
    n_lines: u32,
) -> BodyStructure<'static> {
    let specific = if ty.eq_ignore_ascii_case("text") {
        SpecificFields::Text {
            subtype: istr(subtype),
            number_of_lines: n_lines,
        }
    } else {
        SpecificFields::Basic {
            r#type: istr(ty),
            subtype: istr(subtype),
        }
    };
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: params,
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: istr("7BIT"),
                size: size as u32,
            },
            specific,
        },
        extension_data: None,
    }
}

fn structure(m: &Message<'_>, id: usize, raw: &[u8], base: usize) -> BodyStructure<'static> {
    let p = &m.parts[id];
    let ct = p.content_type();
    let (ty, subtype): (Cow<'_, str>, Cow<'_, str>) = match ct {
        Some(c) => (
            c.c_type.clone(),
            c.c_subtype.clone().unwrap_or(Cow::Borrowed(
                if c.c_type.eq_ignore_ascii_case("text") {
                    "plain"
                } else {
                    "octet-stream"
                },
            )),
        ),
        None => (Cow::Borrowed("text"), Cow::Borrowed("plain")),
    };
    let mut params: Vec<(IString<'static>, IString<'static>)> = ct
        .and_then(|c| c.attributes.as_ref())
        .map(|a| {
            a.iter()
                .map(|a| (istr(&a.name.to_ascii_uppercase()), istr(&a.value)))
                .collect()
        })
        .unwrap_or_default();
    if ct.is_none() {
        params.push((istr("CHARSET"), istr("us-ascii")));
    }
    let body = clamp(
        base + p.offset_body as usize..base + p.offset_end as usize,
        raw.len(),
    );
    match &p.body {
        PartType::Multipart(ids) => {
            let bodies: Vec<BodyStructure<'static>> = ids
                .iter()
                .filter(|&&c| (c as usize) < m.parts.len() && c as usize != id)
                .map(|&c| structure(m, c as usize, raw, base))
                .collect();
            match bodies.try_into() {
                Ok(bodies) => BodyStructure::Multi {
                    bodies,
                    subtype: istr(&subtype),
                    extension_data: None,
                },
                // A multipart without parts: show it as an empty text part.
                Err(_) => single("text", "plain", params, body.len(), lines(&raw[body])),
            }
        }
        _ => {
            let n_lines = lines(&raw[body.clone()]);
            let specific = match &p.body {
                PartType::Message(inner)
                    if !inner.parts.is_empty()
                        && ty.eq_ignore_ascii_case("message")
                        && subtype.eq_ignore_ascii_case("rfc822") =>
                {
                    let b = nested_base(inner, raw, base, body.start);
                    SpecificFields::Message {
                        envelope: Box::new(envelope(inner)),
                        body_structure: Box::new(structure(inner, 0, raw, b)),
                        number_of_lines: n_lines,
                    }
                }
                _ if ty.eq_ignore_ascii_case("text") => SpecificFields::Text {
                    subtype: istr(&subtype),
                    number_of_lines: n_lines,
                },
                _ => SpecificFields::Basic {
                    r#type: istr(&ty),
                    subtype: istr(&subtype),
                },
            };
            BodyStructure::Single {
                body: Body {
                    basic: BasicFields {
                        parameter_list: params,
                        id: nstr(p.content_id().map(|s| format!("<{s}>")).as_deref()),
                        description: nstr(p.content_description()),
                        content_transfer_encoding: istr(
                            &p.content_transfer_encoding()
                                .unwrap_or("7BIT")
                                .to_ascii_uppercase(),
                        ),
                        size: body.len() as u32,
                    },
                    specific,
                },
                extension_data: None,
            }
        }
    }
}

fn empty_envelope() -> Envelope<'static> {
    Envelope {
        date: NString(None),
        subject: NString(None),
        from: Vec::new(),
        sender: Vec::new(),
        reply_to: Vec::new(),
        to: Vec::new(),
        cc: Vec::new(),
        bcc: Vec::new(),
        in_reply_to: NString(None),
        message_id: NString(None),
    }
}

fn addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<Address<'static>> {
    let Some(a) = a else { return Vec::new() };
    a.iter()
        .map(|addr| {
            let email = addr.address.as_deref().unwrap_or("");
            let (local, host) = email.rsplit_once('@').unwrap_or((email, ""));
            Address {
                name: nstr(addr.name.as_deref()),
                adl: NString(None),
                mailbox: nstr(Some(local)),
                host: nstr(Some(host)),
            }
        })
        .collect()
}

fn raw_header(m: &Message<'_>, name: &'static str) -> Option<String> {
    m.header_raw(name)
        .map(|v| v.trim().replace("\r\n", "").replace('\n', ""))
}

fn envelope(m: &Message<'_>) -> Envelope<'static> {
    let from = addresses(m.from());
    let sender = match m.sender() {
        Some(s) => addresses(Some(s)),
        None => from.clone(),
    };
    let reply_to = match m.reply_to() {
        Some(s) => addresses(Some(s)),
        None => from.clone(),
    };
    Envelope {
        date: nstr(raw_header(m, "Date").as_deref()),
        subject: nstr(raw_header(m, "Subject").as_deref()),
        from,
        sender,
        reply_to,
        to: addresses(m.to()),
        cc: addresses(m.cc()),
        bcc: addresses(m.bcc()),
        in_reply_to: nstr(raw_header(m, "In-Reply-To").as_deref()),
        message_id: nstr(raw_header(m, "Message-ID").as_deref()),
    }
}

/// The node a part number path leads to (RFC 3501 6.4.5).
fn resolve<'a>(root: &'a Node, path: &[std::num::NonZeroU32]) -> Option<&'a Node> {
    let mut cur = root;
    let mut top = true;
    for n in path {
        let container = match (&cur.message, top) {
            (Some(m), false) => m.as_ref(),
            _ => cur,
        };
        top = false;
        let i = n.get() as usize - 1;
        cur = if container.children.is_empty() {
            (i == 0).then_some(container)?
        } else {
            container.children.get(i)?
        };
    }
    Some(cur)
}

/// The message a `HEADER`/`TEXT` section of part `p` refers to.
fn message_of<'a>(root: &'a Node, p: &Option<Part>) -> Option<&'a Node> {
    match p {
        None => Some(root),
        Some(p) => resolve(root, p.0.as_ref())?.message.as_deref(),
    }
}

/// The bytes of `section` of `raw` (None: no such part, answered empty).
pub fn section<'a>(raw: &'a [u8], root: &Node, section: &Option<Section<'_>>) -> Cow<'a, [u8]> {
    let pick = |r: Option<Range<usize>>| -> Cow<'a, [u8]> {
        match r {
            Some(r) => Cow::Borrowed(&raw[clamp(r, raw.len())]),
            None => Cow::Borrowed(&[]),
        }
    };
    match section {
        None => Cow::Borrowed(raw),
        Some(Section::Part(p)) => pick(resolve(root, p.0.as_ref()).map(|n| n.body.clone())),
        Some(Section::Header(p)) => pick(message_of(root, p).map(|n| n.header.clone())),
        Some(Section::Text(p)) => pick(message_of(root, p).map(|n| n.body.clone())),
        Some(Section::Mime(p)) => pick(resolve(root, p.0.as_ref()).map(|n| n.header.clone())),
        Some(Section::HeaderFields(p, names)) | Some(Section::HeaderFieldsNot(p, names)) => {
            let not = matches!(section, Some(Section::HeaderFieldsNot(..)));
            let Some(n) = message_of(root, p) else {
                return Cow::Borrowed(&[]);
            };
            let names: Vec<&[u8]> = names.as_ref().iter().map(|a| a.as_ref()).collect();
            Cow::Owned(header_fields(
                &raw[clamp(n.header.clone(), raw.len())],
                &names,
                not,
            ))
        }
    }
}

/// The fields of `header` named (or, with `not`, not named) in `names`,
/// folded lines kept, followed by the blank line.
pub fn header_fields(header: &[u8], names: &[&[u8]], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let continuation = matches!(line.first(), Some(b' ') | Some(b'\t'));
        if !continuation {
            let name = line
                .split(|&b| b == b':')
                .next()
                .unwrap_or(&[])
                .trim_ascii();
            let listed = names.iter().any(|n| n.eq_ignore_ascii_case(name));
            keep = listed != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    const MULTI: &[u8] = b"From: Alice <alice@a.example>\r\nTo: bob@b.example\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--XX--\r\n";

    fn part(p: &[u32]) -> Part {
        Part(
            p.iter()
                .map(|&n| NonZeroU32::new(n).unwrap())
                .collect::<Vec<_>>()
                .try_into()
                .unwrap(),
        )
    }

    #[test]
    fn sections_of_a_multipart_with_a_nested_message() {
        let p = parse(MULTI);
        let s = |sec| String::from_utf8(section(MULTI, &p.root, &Some(sec)).into_owned()).unwrap();
        assert_eq!(s(Section::Part(part(&[1]))), "first");
        assert!(s(Section::Mime(part(&[1]))).starts_with("Content-Type: text/plain\r\n"));
        assert_eq!(
            s(Section::Header(Some(part(&[2])))),
            "Subject: inner\r\n\r\n"
        );
        assert!(s(Section::Text(Some(part(&[2])))).starts_with("inner body"));
        assert!(s(Section::Text(None)).starts_with("--XX\r\n"));
        assert!(s(Section::Header(None)).ends_with("boundary=XX\r\n\r\n"));
        assert_eq!(section(MULTI, &p.root, &None).as_ref(), MULTI);
        assert_eq!(s(Section::Part(part(&[3]))), "", "no such part");
        match &p.structure {
            BodyStructure::Multi { bodies, .. } => assert_eq!(bodies.as_ref().len(), 2),
            other => panic!("not multipart: {other:?}"),
        }
        assert_eq!(p.envelope.from.len(), 1);
        assert_eq!(p.envelope.subject, nstr(Some("hi")));
    }

    #[test]
    fn header_fields_keep_folded_lines() {
        let h = b"Subject: a\r\n b\r\nTo: x\r\nFrom: y\r\n\r\n";
        assert_eq!(
            header_fields(h, &[b"subject", b"FROM"], false),
            b"Subject: a\r\n b\r\nFrom: y\r\n\r\n"
        );
        assert_eq!(
            header_fields(h, &[b"subject"], true),
            b"To: x\r\nFrom: y\r\n\r\n"
        );
    }

    #[test]
    fn garbage_is_one_text_part() {
        for raw in [&b""[..], b"\xff\x00\r\n\r\n", b"no header at all"] {
            let p = parse(raw);
            let whole = section(raw, &p.root, &None);
            assert_eq!(whole.as_ref(), raw);
        }
    }
}
