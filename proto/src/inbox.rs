//! `INBOX`: one line per message in the inbox, never its contents.
//!
//! ```text
//! <account> <id> size=<bytes> arrived=<unix seconds> sender=<base64 key|->
//! ```
//!
//! `sender` is the end-to-end identity key the message came from (its
//! `X-Katzenpost-Sender`); `-` for reports the daemon wrote itself.

use serde::{Deserialize, Serialize};

use crate::fields::{FieldError, FieldWriter, Fields};

/// One message in an account's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxItem {
    /// The account.
    pub account: String,
    /// The inbox id (unique within the account).
    pub id: u64,
    /// Size in bytes.
    pub size: u64,
    /// Unix time of arrival.
    pub arrived: u64,
    /// The sender's identity key (base64), if the message came over the network.
    pub sender: Option<String>,
}

impl InboxItem {
    /// The body line.
    pub fn to_line(&self) -> String {
        FieldWriter::new(&[&self.account, &self.id.to_string()])
            .num("size", self.size)
            .num("arrived", self.arrived)
            .opt_text("sender", self.sender.as_deref())
            .finish()
    }

    /// Parses a body line.
    pub fn parse_line(line: &str) -> Result<InboxItem, FieldError> {
        let f = Fields::parse(line, 2)?;
        Ok(InboxItem {
            account: f.word(0).to_owned(),
            id: f.word(1).parse().map_err(|_| FieldError::BadValue {
                key: "id",
                value: f.word(1).to_owned(),
            })?,
            size: f.count("size")?,
            arrived: f.count("arrived")?,
            sender: f.opt_text("sender"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let i = InboxItem {
            account: "bob@provider2".into(),
            id: 3,
            size: 1234,
            arrived: 1_790_000_000,
            sender: Some("q80U2lS+x1PnkX3LhC7DTkbhtEXcGRvN0pHvOS8E5Gk=".into()),
        };
        assert_eq!(InboxItem::parse_line(&i.to_line()), Ok(i.clone()));
        let report = InboxItem { sender: None, ..i };
        assert!(report.to_line().ends_with("sender=-"));
        assert_eq!(InboxItem::parse_line(&report.to_line()), Ok(report));
        assert!(InboxItem::parse_line("b@p x size=1").is_err());
    }
}
