//! mailproxyd: a mail daemon that bridges ordinary SMTP and POP3 clients to
//! a Katzenpost mix network. This library holds everything the binary is
//! made of, so that tests can drive each part directly.

// Foundation: configuration, keys, recipients, management, process life.
pub mod accept;
pub mod auth;
pub mod config;
pub mod connection;
pub mod control;
pub mod daemon;
pub mod directory;
pub mod events;
pub mod imap;
pub mod keys;
pub mod lock;
pub mod logging;
pub mod memory;
pub mod mgmt;
pub mod password;
pub mod recipients;
pub mod register;
pub mod slots;
pub mod totals;

// Mail front: the encrypted store, SMTP submission, POP3 retrieval.
pub mod linebuf;
pub mod login;
pub mod message;
pub mod pop3;
pub mod smtp;
pub mod store;

// Network engine: per-account sending and receiving over the mixnet.
pub mod engine;
