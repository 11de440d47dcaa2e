//! The provider's management interface (§4.10), for provisioning users:
//! `ADD_USER`, `UPDATE_USER`, `REMOVE_USER`, `SET_USER_IDENTITY`,
//! `REMOVE_USER_IDENTITY`, `USER_LINK`, `USER_IDENTITY`, `SEND_RATE`,
//! `SEND_BURST`, `QUIT`. Keys are X25519 public keys in hex or base64 (hex
//! first). Unlike the original, arguments may be separated by any run of
//! spaces.

use base64::Engine;

/// The banner's fixed text after `220 <identifier> `.
pub const BANNER_SUFFIX: &str = "Katzenpost Management Interface Service ready";
/// 250.
pub const OK: &str = "250 Requested action ok, completed";
/// 500.
pub const UNKNOWN: &str = "500 Syntax error, command unrecognised";
/// 501.
pub const BAD_ARGS: &str = "501 Syntax error in parameters or arguments";
/// 554.
pub const FAILED: &str = "554 Transaction failed";

/// A parsed management command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MgmtCommand {
    AddUser {
        user: String,
        link_key: [u8; 32],
    },
    UpdateUser {
        user: String,
        link_key: [u8; 32],
    },
    RemoveUser {
        user: String,
    },
    SetUserIdentity {
        user: String,
        identity_key: Option<[u8; 32]>,
    },
    RemoveUserIdentity {
        user: String,
    },
    UserLink {
        user: String,
    },
    UserIdentity {
        user: String,
    },
    SendRate(u64),
    SendBurst(u64),
    Quit,
}

/// Why a line is not a command: the reply to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MgmtParseError {
    /// 500.
    Unknown,
    /// 501.
    BadArguments,
}

impl MgmtParseError {
    /// The reply line.
    pub fn reply(self) -> &'static str {
        match self {
            MgmtParseError::Unknown => UNKNOWN,
            MgmtParseError::BadArguments => BAD_ARGS,
        }
    }
}

/// Decodes a 32-byte key given in hex (tried first) or standard base64.
pub fn decode_key(s: &str) -> Option<[u8; 32]> {
    if let Ok(v) = hex::decode(s) {
        return v.try_into().ok();
    }
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()?
        .try_into()
        .ok()
}

/// Parses one request line (without its line ending).
pub fn parse_line(line: &[u8]) -> Result<MgmtCommand, MgmtParseError> {
    let line = std::str::from_utf8(line).map_err(|_| MgmtParseError::BadArguments)?;
    let mut words = line.split_ascii_whitespace();
    let verb = words
        .next()
        .ok_or(MgmtParseError::Unknown)?
        .to_ascii_uppercase();
    let args: Vec<&str> = words.collect();
    let key = |s: &str| decode_key(s).ok_or(MgmtParseError::BadArguments);
    let num = |s: &str| s.parse::<u64>().map_err(|_| MgmtParseError::BadArguments);
    use MgmtCommand as C;
    let cmd = match (verb.as_str(), args.as_slice()) {
        ("ADD_USER", [u, k]) => C::AddUser {
            user: u.to_string(),
            link_key: key(k)?,
        },
        ("UPDATE_USER", [u, k]) => C::UpdateUser {
            user: u.to_string(),
            link_key: key(k)?,
        },
        ("REMOVE_USER", [u]) => C::RemoveUser {
            user: u.to_string(),
        },
        ("SET_USER_IDENTITY", [u]) => C::SetUserIdentity {
            user: u.to_string(),
            identity_key: None,
        },
        ("SET_USER_IDENTITY", [u, k]) => C::SetUserIdentity {
            user: u.to_string(),
            identity_key: Some(key(k)?),
        },
        ("REMOVE_USER_IDENTITY", [u]) => C::RemoveUserIdentity {
            user: u.to_string(),
        },
        ("USER_LINK", [u]) => C::UserLink {
            user: u.to_string(),
        },
        ("USER_IDENTITY", [u]) => C::UserIdentity {
            user: u.to_string(),
        },
        ("SEND_RATE", [n]) => C::SendRate(num(n)?),
        ("SEND_BURST", [n]) => C::SendBurst(num(n)?),
        ("QUIT", []) => C::Quit,
        (
            "ADD_USER"
            | "UPDATE_USER"
            | "REMOVE_USER"
            | "SET_USER_IDENTITY"
            | "REMOVE_USER_IDENTITY"
            | "USER_LINK"
            | "USER_IDENTITY"
            | "SEND_RATE"
            | "SEND_BURST"
            | "QUIT",
            _,
        ) => return Err(MgmtParseError::BadArguments),
        _ => return Err(MgmtParseError::Unknown),
    };
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_provisioning_commands() {
        let hex_key = "01".repeat(32);
        let b64_key = base64::engine::general_purpose::STANDARD.encode([2u8; 32]);
        assert_eq!(
            parse_line(format!("add_user Alice {hex_key}").as_bytes()),
            Ok(MgmtCommand::AddUser {
                user: "Alice".into(),
                link_key: [1; 32]
            })
        );
        assert_eq!(
            parse_line(format!("SET_USER_IDENTITY  bob   {b64_key}").as_bytes()),
            Ok(MgmtCommand::SetUserIdentity {
                user: "bob".into(),
                identity_key: Some([2; 32])
            })
        );
        assert_eq!(
            parse_line(b"SET_USER_IDENTITY bob"),
            Ok(MgmtCommand::SetUserIdentity {
                user: "bob".into(),
                identity_key: None
            })
        );
        assert_eq!(parse_line(b"SEND_BURST 10"), Ok(MgmtCommand::SendBurst(10)));
        assert_eq!(parse_line(b"QUIT"), Ok(MgmtCommand::Quit));
    }

    #[test]
    fn bad_lines_get_500_or_501() {
        assert_eq!(parse_line(b""), Err(MgmtParseError::Unknown));
        assert_eq!(parse_line(b"FROB x"), Err(MgmtParseError::Unknown));
        assert_eq!(
            parse_line(b"ADD_USER alice"),
            Err(MgmtParseError::BadArguments)
        );
        assert_eq!(
            parse_line(b"ADD_USER alice zz"),
            Err(MgmtParseError::BadArguments)
        );
        assert_eq!(
            parse_line(b"SEND_RATE -1"),
            Err(MgmtParseError::BadArguments)
        );
        assert_eq!(parse_line(b"\xff\xfe"), Err(MgmtParseError::BadArguments));
        assert_eq!(parse_line(b"QUIT now"), Err(MgmtParseError::BadArguments));
        // A 31-byte key is refused.
        assert_eq!(
            parse_line(format!("ADD_USER a {}", "01".repeat(31)).as_bytes()),
            Err(MgmtParseError::BadArguments)
        );
    }
}
