//! Sans-I/O SMTP command parser.
//!
//! [`parse`] looks at the start of a buffer and returns one command and the
//! number of bytes it used, [`ParseError::Incomplete`] when more input is
//! needed, or an error with the number of bytes to skip. It never reads past
//! the first line ending, so pipelined commands are parsed one at a time.

/// Longest command line accepted, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest AUTH command or SASL response line (RFC 4954 §4).
pub const MAX_AUTH_LINE: usize = 12288;
/// Longest path (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// One SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// HELO domain.
    Helo(String),
    /// EHLO domain.
    Ehlo(String),
    /// MAIL FROM:<path> params; the null path is an empty string.
    Mail {
        /// Reverse path without angle brackets.
        from: String,
        /// ESMTP parameters, keywords upper-cased.
        params: Vec<(String, Option<String>)>,
    },
    /// RCPT TO:<path> params.
    Rcpt {
        /// Forward path without angle brackets.
        to: String,
        /// ESMTP parameters, keywords upper-cased.
        params: Vec<(String, Option<String>)>,
    },
    /// DATA.
    Data,
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
    /// VRFY.
    Vrfy,
    /// EXPN.
    Expn,
    /// HELP.
    Help,
    /// STARTTLS.
    StartTls,
    /// AUTH mechanism [initial-response].
    Auth {
        /// Mechanism, upper-cased.
        mechanism: String,
        /// Initial response, if given.
        initial: Option<String>,
    },
    /// A verb we do not implement (upper-cased).
    Unknown(String),
}

pub use crate::linebuf::{line, skip_line, ParseError};

/// Parses one command from the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<(Command, usize), ParseError> {
    // AUTH lines may be long; everything else is held to 512 octets.
    let (l, n) = line(buf, MAX_AUTH_LINE)?;
    let is_auth = l.len() >= 4 && l[..4].eq_ignore_ascii_case(b"AUTH");
    if !is_auth && n > MAX_COMMAND_LINE {
        return Err(ParseError::Syntax {
            consumed: n,
            reason: "5.5.2 Line too long",
        });
    }
    let syntax = |reason| ParseError::Syntax {
        consumed: n,
        reason,
    };
    let Ok(text) = std::str::from_utf8(l) else {
        return Err(syntax("5.5.2 Syntax error: command is not UTF-8"));
    };
    if text.bytes().any(|b| b < 0x20 && b != b'\t') {
        return Err(syntax("5.5.2 Syntax error: control character in command"));
    }
    let (verb, rest) = match text.find([' ', '\t']) {
        Some(i) => (&text[..i], text[i + 1..].trim_matches([' ', '\t'])),
        None => (text, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |c: Command| {
        if rest.is_empty() {
            Ok((c, n))
        } else {
            Err(syntax("5.5.4 Syntax error: no parameters allowed"))
        }
    };
    match verb.as_str() {
        "HELO" => {
            if rest.is_empty() {
                Err(syntax("5.5.4 Syntax: HELO hostname"))
            } else {
                Ok((Command::Helo(rest.to_owned()), n))
            }
        }
        // Some clients send a bare EHLO; accept it.
        "EHLO" => Ok((Command::Ehlo(rest.to_owned()), n)),
        "MAIL" => {
            let (from, params) = path_and_params(rest, "FROM:").map_err(syntax)?;
            Ok((Command::Mail { from, params }, n))
        }
        "RCPT" => {
            let (to, params) = path_and_params(rest, "TO:").map_err(syntax)?;
            if to.is_empty() {
                return Err(syntax("5.1.3 Syntax error: empty recipient"));
            }
            Ok((Command::Rcpt { to, params }, n))
        }
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok((Command::Noop, n)),
        "QUIT" => no_args(Command::Quit),
        "VRFY" => Ok((Command::Vrfy, n)),
        "EXPN" => Ok((Command::Expn, n)),
        "HELP" => Ok((Command::Help, n)),
        "STARTTLS" => Ok((Command::StartTls, n)),
        "AUTH" => {
            let mut it = rest.split([' ', '\t']).filter(|s| !s.is_empty());
            let Some(mech) = it.next() else {
                return Err(syntax("5.5.4 Syntax: AUTH mechanism [initial-response]"));
            };
            let initial = it.next().map(str::to_owned);
            if it.next().is_some() {
                return Err(syntax("5.5.4 Syntax: AUTH mechanism [initial-response]"));
            }
            Ok((
                Command::Auth {
                    mechanism: mech.to_ascii_uppercase(),
                    initial,
                },
                n,
            ))
        }
        "" => Err(syntax("5.5.2 Syntax error: empty command")),
        _ => Ok((Command::Unknown(verb), n)),
    }
}

type PathParams = (String, Vec<(String, Option<String>)>);

fn path_and_params(rest: &str, prefix: &str) -> Result<PathParams, &'static str> {
    // Compare bytes: `rest` may hold multi-byte characters at any offset.
    if rest.len() < prefix.len()
        || !rest.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    {
        return Err(if prefix == "FROM:" {
            "5.5.4 Syntax: MAIL FROM:<address>"
        } else {
            "5.5.4 Syntax: RCPT TO:<address>"
        });
    }
    // Tolerate a space after the colon (common client bug).
    let rest = rest[prefix.len()..].trim_start_matches([' ', '\t']);
    let (path, after) = if let Some(r) = rest.strip_prefix('<') {
        let end = r.find('>').ok_or("5.5.4 Syntax error: missing '>'")?;
        (&r[..end], &r[end + 1..])
    } else {
        match rest.find([' ', '\t']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        }
    };
    // Drop an obsolete source route "@a,@b:".
    let path = match (path.starts_with('@'), path.find(':')) {
        (true, Some(i)) => &path[i + 1..],
        _ => path,
    };
    if path.len() > MAX_PATH {
        return Err("5.5.4 Path too long");
    }
    if path.contains(['<', '>', ' ', '\t']) {
        return Err("5.1.3 Syntax error in address");
    }
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return Err("5.5.4 Syntax error after address");
    }
    let mut params = Vec::new();
    for p in after.split([' ', '\t']).filter(|s| !s.is_empty()) {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (p, None),
        };
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("5.5.4 Syntax error in parameters");
        }
        params.push((k.to_ascii_uppercase(), v));
        if params.len() > 16 {
            return Err("5.5.4 Too many parameters");
        }
    }
    Ok((path.to_owned(), params))
}

/// Splits `local@domain`, checking RFC 5321 length limits; lower-cases it.
pub fn normalize_address(addr: &str) -> Option<String> {
    let (local, domain) = addr.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || local.len() > 64 || domain.len() > 255 {
        return None;
    }
    if !addr.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(addr.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Command {
        let (c, n) = parse(s.as_bytes()).unwrap();
        assert_eq!(n, s.len());
        c
    }

    #[test]
    fn commands() {
        assert_eq!(
            p("ehlo [127.0.0.1]\r\n"),
            Command::Ehlo("[127.0.0.1]".into())
        );
        assert_eq!(p("EHLO\r\n"), Command::Ehlo("".into()));
        assert_eq!(p("HeLo x\n"), Command::Helo("x".into()));
        assert_eq!(
            p("mail FROM:<a@b> size=160 BODY=8BITMIME\r\n"),
            Command::Mail {
                from: "a@b".into(),
                params: vec![
                    ("SIZE".into(), Some("160".into())),
                    ("BODY".into(), Some("8BITMIME".into()))
                ]
            }
        );
        assert_eq!(
            p("MAIL FROM: <a@b>\r\n"),
            Command::Mail {
                from: "a@b".into(),
                params: vec![]
            }
        );
        assert_eq!(
            p("MAIL FROM:<>\r\n"),
            Command::Mail {
                from: "".into(),
                params: vec![]
            }
        );
        assert_eq!(
            p("RCPT TO:<@x,@y:u@d>\r\n"),
            Command::Rcpt {
                to: "u@d".into(),
                params: vec![]
            }
        );
        assert_eq!(
            p("RCPT TO:u@d\r\n"),
            Command::Rcpt {
                to: "u@d".into(),
                params: vec![]
            }
        );
        assert_eq!(
            p("AUTH PLAIN AGEAYg==\r\n"),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            }
        );
        assert_eq!(
            p("auth login\r\n"),
            Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None
            }
        );
        assert_eq!(p("data\r\n"), Command::Data);
        assert_eq!(p("LAST\r\n"), Command::Unknown("LAST".into()));
        assert_eq!(p("VRFY bob\r\n"), Command::Vrfy);
        assert!(matches!(
            parse(b"RCPT TO:<>\r\n"),
            Err(ParseError::Syntax { consumed: 12, .. })
        ));
        assert!(matches!(
            parse(b"MAIL TO:<a@b>\r\n"),
            Err(ParseError::Syntax { .. })
        ));
        assert!(matches!(
            parse(b"DATA x\r\n"),
            Err(ParseError::Syntax { .. })
        ));
        assert!(matches!(
            parse(b"\r\n"),
            Err(ParseError::Syntax { consumed: 2, .. })
        ));
        assert_eq!(parse(b"MAIL FROM:<a"), Err(ParseError::Incomplete));
        // Found by fuzzing: a multi-byte character where "TO:" would be.
        assert!(matches!(
            parse("RCPT TO\u{4b0}PI\n".as_bytes()),
            Err(ParseError::Syntax { .. })
        ));
        assert!(matches!(
            parse("MAIL F\u{4b0}\r\n".as_bytes()),
            Err(ParseError::Syntax { .. })
        ));
    }

    #[test]
    fn limits() {
        let long = format!("NOOP {}\r\n", "x".repeat(600));
        assert!(matches!(
            parse(long.as_bytes()),
            Err(ParseError::Syntax { .. })
        ));
        let auth = format!("AUTH PLAIN {}\r\n", "A".repeat(2000));
        assert!(parse(auth.as_bytes()).is_ok());
        let huge = vec![b'x'; MAX_AUTH_LINE + 5];
        assert_eq!(parse(&huge), Err(ParseError::LineTooLong));
        assert_eq!(skip_line(b"xxx\nNOOP"), (4, true));
        assert_eq!(
            normalize_address("Alice@Provider1"),
            Some("alice@provider1".into())
        );
        assert_eq!(normalize_address("nodomain"), None);
        assert_eq!(normalize_address(&format!("{}@x", "a".repeat(65))), None);
    }
}
