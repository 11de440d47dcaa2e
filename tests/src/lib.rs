//! End-to-end test harness: a local Katzenpost testnet (in process, with
//! fault injection), real `mailproxyd` child processes with accounts
//! registered at its providers, and the stock mail clients (swaks, curl,
//! Python poplib; the IMAP clients of [`imap`]) plus small native SMTP/POP3
//! clients for polling.
//!
//! Start with [`world::World::builder`]. Every child process is killed when
//! its owner is dropped, also when a test panics; the daemons' log tails are
//! printed then.

pub mod bins;
pub mod daemon;
pub mod imap;
pub mod mail;
pub mod net;
pub mod wait;
pub mod world;

pub use daemon::{AccountKeys, Daemon, DaemonOptions};
pub use mail::{Login, Pop3, Smtp};
pub use net::Net;
pub use wait::{wait_for, wait_until};
pub use world::{DaemonSpec, World, WorldBuilder};
