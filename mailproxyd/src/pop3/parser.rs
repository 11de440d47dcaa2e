//! Sans-I/O POP3 command parser (RFC 1939, RFC 2449, RFC 5034).

/// Longest command line, CRLF included (RFC 2449 §4).
pub const MAX_COMMAND_LINE: usize = 255;
/// Longest AUTH command or SASL response line.
pub const MAX_AUTH_LINE: usize = 12288;

/// One POP3 command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// USER name.
    User(String),
    /// PASS password (everything after the first space).
    Pass(String),
    /// AUTH [mechanism [initial-response]].
    Auth {
        /// Mechanism, upper-cased; None lists mechanisms.
        mechanism: Option<String>,
        /// Initial response.
        initial: Option<String>,
    },
    /// CAPA.
    Capa,
    /// STAT.
    Stat,
    /// LIST [n].
    List(Option<u32>),
    /// UIDL [n].
    Uidl(Option<u32>),
    /// RETR n.
    Retr(u32),
    /// DELE n.
    Dele(u32),
    /// TOP n lines.
    Top(u32, u32),
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
    /// Any other verb (upper-cased), e.g. APOP, STLS, LAST.
    Unknown(String),
}

pub use crate::linebuf::{line, ParseError};

fn number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses one command from the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<(Command, usize), ParseError> {
    let (l, n) = line(buf, MAX_AUTH_LINE)?;
    let is_auth = l.len() >= 4 && l[..4].eq_ignore_ascii_case(b"AUTH");
    if !is_auth && n > MAX_COMMAND_LINE {
        return Err(ParseError::Syntax {
            consumed: n,
            reason: "line too long",
        });
    }
    let syntax = |reason| ParseError::Syntax {
        consumed: n,
        reason,
    };
    let Ok(text) = std::str::from_utf8(l) else {
        return Err(syntax("command is not UTF-8"));
    };
    if text.bytes().any(|b| b < 0x20 && b != b'\t') {
        return Err(syntax("control character in command"));
    }
    let (verb, rest) = match text.find(' ') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let args: Vec<&str> = rest.split_ascii_whitespace().collect();
    let none = |c: Command| {
        if args.is_empty() {
            Ok((c, n))
        } else {
            Err(syntax("no arguments allowed"))
        }
    };
    let opt_num = |f: fn(Option<u32>) -> Command| match args.as_slice() {
        [] => Ok((f(None), n)),
        [a] => number(a)
            .map(|v| (f(Some(v)), n))
            .ok_or(syntax("invalid message number")),
        _ => Err(syntax("too many arguments")),
    };
    let one_num = |f: fn(u32) -> Command| match args.as_slice() {
        [a] => number(a)
            .map(|v| (f(v), n))
            .ok_or(syntax("invalid message number")),
        _ => Err(syntax("one message number required")),
    };
    match verb.as_str() {
        "USER" => {
            if args.len() == 1 {
                Ok((Command::User(args[0].to_owned()), n))
            } else {
                Err(syntax("usage: USER name"))
            }
        }
        "PASS" => {
            if rest.is_empty() {
                Err(syntax("usage: PASS password"))
            } else {
                Ok((Command::Pass(rest.to_owned()), n))
            }
        }
        "AUTH" => match args.as_slice() {
            [] => Ok((
                Command::Auth {
                    mechanism: None,
                    initial: None,
                },
                n,
            )),
            [m] => Ok((
                Command::Auth {
                    mechanism: Some(m.to_ascii_uppercase()),
                    initial: None,
                },
                n,
            )),
            [m, i] => Ok((
                Command::Auth {
                    mechanism: Some(m.to_ascii_uppercase()),
                    initial: Some((*i).to_owned()),
                },
                n,
            )),
            _ => Err(syntax("usage: AUTH mechanism [initial-response]")),
        },
        "CAPA" => none(Command::Capa),
        "STAT" => none(Command::Stat),
        "LIST" => opt_num(Command::List),
        "UIDL" => opt_num(Command::Uidl),
        "RETR" => one_num(Command::Retr),
        "DELE" => one_num(Command::Dele),
        "TOP" => match args.as_slice() {
            [a, b] => match (number(a), number(b)) {
                (Some(a), Some(b)) => Ok((Command::Top(a, b), n)),
                _ => Err(syntax("invalid arguments")),
            },
            _ => Err(syntax("usage: TOP msg lines")),
        },
        "RSET" => none(Command::Rset),
        "NOOP" => none(Command::Noop),
        "QUIT" => none(Command::Quit),
        "" => Err(syntax("empty command")),
        _ => Ok((Command::Unknown(verb), n)),
    }
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
            p("user Alice@Provider1\r\n"),
            Command::User("Alice@Provider1".into())
        );
        assert_eq!(p("PASS se cret \r\n"), Command::Pass("se cret ".into()));
        assert_eq!(p("list\r\n"), Command::List(None));
        assert_eq!(p("LIST 3\n"), Command::List(Some(3)));
        assert_eq!(p("TOP 1 0\r\n"), Command::Top(1, 0));
        assert_eq!(p("LAST\r\n"), Command::Unknown("LAST".into()));
        assert_eq!(
            p("AUTH\r\n"),
            Command::Auth {
                mechanism: None,
                initial: None
            }
        );
        assert_eq!(
            p("AUTH plain AGEAYg==\r\n"),
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGEAYg==".into())
            }
        );
        assert!(matches!(
            parse(b"RETR x\r\n"),
            Err(ParseError::Syntax { consumed: 8, .. })
        ));
        assert!(matches!(
            parse(b"RETR -1\r\n"),
            Err(ParseError::Syntax { .. })
        ));
        assert!(matches!(
            parse(b"RETR 99999999999\r\n"),
            Err(ParseError::Syntax { .. })
        ));
        assert!(matches!(
            parse(b"STAT 1\r\n"),
            Err(ParseError::Syntax { .. })
        ));
        assert_eq!(parse(b"RETR 1"), Err(ParseError::Incomplete));
        let long = format!("USER {}\r\n", "a".repeat(300));
        assert!(matches!(
            parse(long.as_bytes()),
            Err(ParseError::Syntax { .. })
        ));
        assert_eq!(
            parse(&vec![b'a'; MAX_AUTH_LINE]),
            Err(ParseError::LineTooLong)
        );
    }
}
