//! The engine's externally visible status.

pub use mailproxy_proto::ConnState;

/// What the management socket can show about an account's engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStatus {
    /// The provider link: connecting (first attempt or reconnecting), up, or
    /// down (the last attempt failed; waiting before the next).
    pub state: ConnState,
    /// A link session to the provider is up (`state == ConnState::Up`).
    pub connected: bool,
    /// The last error (connection, PKI or protocol), if any.
    pub last_error: Option<String>,
    /// Our clock minus the provider's, in seconds, from the last handshake.
    pub clock_skew: Option<i64>,
    /// Epoch of the newest verified PKI document held.
    pub document_epoch: Option<u64>,
    /// Unix seconds at which that document was obtained (from the provider
    /// or the authority; for a document loaded from the store at start-up,
    /// when it was originally fetched, if recorded).
    pub document_fetched: Option<u64>,
    /// Sphinx packets sent (blocks, retransmissions and decoys).
    pub packets_sent: u64,
    /// Retransmissions among them.
    pub retransmissions: u64,
    /// SURB-ACKs accepted (blocks).
    pub acks: u64,
    /// Queue entries completed by ACK since start.
    pub messages_acked: u64,
    /// Messages delivered into the inbox.
    pub delivered: u64,
    /// Queue entries bounced.
    pub bounced: u64,
    /// Incomplete incoming messages held.
    pub partials: u64,
    /// Their stored bytes.
    pub partial_bytes: u64,
}

impl EngineStatus {
    /// Sets the connection state, keeping `connected` in sync.
    pub(super) fn set_state(&mut self, state: ConnState) {
        self.state = state;
        self.connected = state == ConnState::Up;
    }
}
