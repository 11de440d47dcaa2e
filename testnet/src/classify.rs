//! What a node does with an unwrapped packet, by its command set (§2.7,
//! server v0.0.7 `internal/packet`).

use katzenpost::geometry::{RECIPIENT_ID_LENGTH, SURB_ID_LENGTH};
use katzenpost::sphinx::commands::RoutingCommand;

/// The class of an unwrapped packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketClass {
    /// Delay, then forward to `next`.
    Forward { next: [u8; 32], delay_ms: u32 },
    /// A user block; `ack_delay_ms` is set when the sender asked for a
    /// SURB-ACK (terminal NodeDelay present).
    ToUser {
        recipient: [u8; RECIPIENT_ID_LENGTH],
        ack_delay_ms: Option<u32>,
    },
    /// A SURB reply for a user.
    SurbReply {
        recipient: [u8; RECIPIENT_ID_LENGTH],
        surb_id: [u8; SURB_ID_LENGTH],
    },
}

/// Classifies a command list; `None` means: drop the packet.
pub fn classify(commands: &[RoutingCommand]) -> Option<PacketClass> {
    let mut next = None;
    let mut delay = None;
    let mut recipient = None;
    let mut surb = None;
    for c in commands {
        let dup = match c {
            RoutingCommand::NextNodeHop { id, .. } => next.replace(*id).is_some(),
            RoutingCommand::NodeDelay(d) => delay.replace(*d).is_some(),
            RoutingCommand::Recipient(r) => recipient.replace(*r).is_some(),
            RoutingCommand::SurbReply(s) => surb.replace(*s).is_some(),
        };
        if dup {
            return None;
        }
    }
    match (next, delay, recipient, surb) {
        (Some(next), Some(delay_ms), None, None) => Some(PacketClass::Forward { next, delay_ms }),
        (None, ack_delay_ms, Some(recipient), None) => Some(PacketClass::ToUser {
            recipient,
            ack_delay_ms,
        }),
        (None, None, Some(recipient), Some(surb_id)) => {
            Some(PacketClass::SurbReply { recipient, surb_id })
        }
        _ => None,
    }
}

/// Trims the NUL padding of a recipient id. `None` if it is not UTF-8.
pub fn recipient_name(recipient: &[u8; RECIPIENT_ID_LENGTH]) -> Option<&str> {
    let end = recipient.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    std::str::from_utf8(&recipient[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(name: &str) -> [u8; 64] {
        let mut r = [0u8; 64];
        r[..name.len()].copy_from_slice(name.as_bytes());
        r
    }

    #[test]
    fn the_four_classes_and_the_rest() {
        use RoutingCommand as C;
        let hop = C::NextNodeHop {
            id: [1; 32],
            mac: [2; 16],
        };
        assert_eq!(
            classify(&[C::NodeDelay(5), hop.clone()]),
            Some(PacketClass::Forward {
                next: [1; 32],
                delay_ms: 5
            })
        );
        assert_eq!(
            classify(&[C::Recipient(rcpt("bob")), C::NodeDelay(9)]),
            Some(PacketClass::ToUser {
                recipient: rcpt("bob"),
                ack_delay_ms: Some(9)
            })
        );
        assert_eq!(
            classify(&[C::Recipient(rcpt("bob"))]),
            Some(PacketClass::ToUser {
                recipient: rcpt("bob"),
                ack_delay_ms: None
            })
        );
        assert_eq!(
            classify(&[C::Recipient(rcpt("al")), C::SurbReply([7; 16])]),
            Some(PacketClass::SurbReply {
                recipient: rcpt("al"),
                surb_id: [7; 16]
            })
        );
        // Forward without a delay, forward with a recipient, SURB reply with a delay, duplicates, nothing.
        assert_eq!(classify(std::slice::from_ref(&hop)), None);
        assert_eq!(
            classify(&[hop.clone(), C::NodeDelay(1), C::Recipient(rcpt("x"))]),
            None
        );
        assert_eq!(
            classify(&[
                C::Recipient(rcpt("a")),
                C::SurbReply([0; 16]),
                C::NodeDelay(1)
            ]),
            None
        );
        assert_eq!(classify(&[C::NodeDelay(1), C::NodeDelay(2), hop]), None);
        assert_eq!(classify(&[]), None);
    }

    #[test]
    fn recipient_names_are_trimmed() {
        assert_eq!(recipient_name(&rcpt("+keyserver")), Some("+keyserver"));
        assert_eq!(recipient_name(&[0; 64]), Some(""));
        let mut bad = [0u8; 64];
        bad[0] = 0xff;
        assert_eq!(recipient_name(&bad), None);
    }
}
