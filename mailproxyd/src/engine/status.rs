//! The engine's externally visible status.

/// What the management socket can show about an account's engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStatus {
    /// A link session to the provider is up.
    pub connected: bool,
    /// The last error (connection, PKI or protocol), if any.
    pub last_error: Option<String>,
    /// Our clock minus the provider's, in seconds, from the last handshake.
    pub clock_skew: Option<i64>,
    /// Epoch of the newest verified PKI document held.
    pub document_epoch: Option<u64>,
    /// Sphinx packets sent (blocks, retransmissions and decoys).
    pub packets_sent: u64,
    /// Retransmissions among them.
    pub retransmissions: u64,
    /// SURB-ACKs accepted.
    pub acks: u64,
    /// Messages delivered into the inbox.
    pub delivered: u64,
    /// Queue entries bounced.
    pub bounced: u64,
}
