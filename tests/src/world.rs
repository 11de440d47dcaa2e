//! A whole test world: a temp dir, the testnet, and mailproxyd daemons whose
//! accounts are registered at their providers and (by default) know each
//! other's keys.

use std::path::PathBuf;

use testnet::config::Params;

use crate::daemon::{Daemon, DaemonOptions};
use crate::net::{self, Net};

/// One daemon to create: its accounts and settings.
#[derive(Debug, Clone)]
pub struct DaemonSpec {
    accounts: Vec<(String, String, bool)>,
    options: DaemonOptions,
    unknown: Vec<String>,
    start: bool,
}

impl DaemonSpec {
    /// A daemon with accounts `user@provider`.
    pub fn new(accounts: &[&str]) -> DaemonSpec {
        DaemonSpec {
            accounts: accounts
                .iter()
                .map(|a| {
                    let (u, p) = a.split_once('@').expect("user@provider");
                    (u.to_string(), p.to_string(), false)
                })
                .collect(),
            options: DaemonOptions::default(),
            unknown: Vec::new(),
            start: true,
        }
    }

    /// `[Debug]` and logging settings.
    pub fn options(mut self, o: DaemonOptions) -> Self {
        self.options = o;
        self
    }

    /// Turns InsecureKeyDiscovery on for account `id`.
    pub fn key_discovery(mut self, id: &str) -> Self {
        let (u, p) = id.split_once('@').expect("user@provider");
        for a in &mut self.accounts {
            if a.0 == u && a.1 == p {
                a.2 = true;
            }
        }
        self
    }

    /// Leaves `id` out of this daemon's `[Recipients]`.
    pub fn without_recipient(mut self, id: &str) -> Self {
        self.unknown.push(id.to_string());
        self
    }

    /// Creates the daemon without starting it.
    pub fn stopped(mut self) -> Self {
        self.start = false;
        self
    }
}

/// Builds a [`World`].
pub struct WorldBuilder {
    params: Params,
    daemons: Vec<DaemonSpec>,
}

impl WorldBuilder {
    /// Network parameters (default: [`net::params`] with 10 packets/s).
    pub fn params(mut self, p: Params) -> Self {
        self.params = p;
        self
    }

    /// Adds a daemon.
    pub fn daemon(mut self, d: DaemonSpec) -> Self {
        self.daemons.push(d);
        self
    }

    /// Starts the network, generates and registers every account's keys,
    /// writes each daemon's `[Recipients]` and starts the daemons.
    pub fn build(self) -> World {
        let tmp = tempfile::Builder::new()
            .prefix("mp-e2e")
            .tempdir()
            .expect("temp dir");
        let net = Net::start(&tmp.path().join("testnet"), self.params);
        let authority = net.authority();
        let mut daemons = Vec::new();
        for (i, spec) in self.daemons.iter().enumerate() {
            let accounts: Vec<(&str, &str, bool)> = spec
                .accounts
                .iter()
                .map(|(u, p, kd)| (u.as_str(), p.as_str(), *kd))
                .collect();
            daemons.push(Daemon::new(
                &tmp.path().join(format!("daemon{i}")),
                &accounts,
                spec.options.clone(),
                authority.clone(),
            ));
        }
        let all: Vec<(String, [u8; 32])> = daemons
            .iter()
            .flat_map(|d| d.accounts.iter().map(|a| (a.id.clone(), a.identity)))
            .collect();
        for d in &daemons {
            for a in &d.accounts {
                net.register(&a.provider, &a.user, a.link, a.identity);
            }
        }
        for (d, spec) in daemons.iter_mut().zip(&self.daemons) {
            let known: Vec<(String, [u8; 32])> = all
                .iter()
                .filter(|(id, _)| !spec.unknown.contains(id))
                .cloned()
                .collect();
            d.write_config(&known);
            if spec.start {
                d.start();
            }
        }
        World {
            daemons,
            net,
            tmp_path: tmp.path().to_path_buf(),
            _tmp: tmp,
        }
    }
}

/// A running world. Dropping it kills the daemons, stops the network and
/// removes the temp dir; if the thread is panicking, the daemons' log tails
/// are printed first.
pub struct World {
    pub daemons: Vec<Daemon>,
    pub net: Net,
    tmp_path: PathBuf,
    _tmp: tempfile::TempDir,
}

impl World {
    /// A world with network parameters [`net::params`]`(10.0)` and no daemons yet.
    pub fn builder() -> WorldBuilder {
        WorldBuilder {
            params: net::params(10.0),
            daemons: Vec::new(),
        }
    }

    /// The usual world: one daemon with `accounts` (e.g. alice@provider1,
    /// bob@provider2), all knowing each other.
    pub fn simple(accounts: &[&str]) -> World {
        World::builder().daemon(DaemonSpec::new(accounts)).build()
    }

    /// A scratch directory inside the world's temp dir.
    pub fn scratch(&self) -> PathBuf {
        let p = self.tmp_path.join("scratch");
        std::fs::create_dir_all(&p).expect("scratch dir");
        p
    }

    /// The daemon serving account `id`.
    pub fn daemon_of(&self, id: &str) -> &Daemon {
        self.daemons
            .iter()
            .find(|d| d.accounts.iter().any(|a| a.id == id))
            .unwrap_or_else(|| panic!("no daemon serves {id}"))
    }

    /// Index of the daemon serving account `id`.
    pub fn daemon_index(&self, id: &str) -> usize {
        self.daemons
            .iter()
            .position(|d| d.accounts.iter().any(|a| a.id == id))
            .unwrap_or_else(|| panic!("no daemon serves {id}"))
    }

    /// The SMTP and POP3 login of account `id`.
    pub fn login(&self, id: &str) -> crate::mail::Login {
        self.daemon_of(id).login(id)
    }

    /// Account `id`'s identity public key.
    pub fn identity(&self, id: &str) -> [u8; 32] {
        self.daemon_of(id).account(id).identity
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            d.kill9();
        }
        if std::thread::panicking() {
            for (i, d) in self.daemons.iter().enumerate() {
                eprintln!("=== daemon{i} ===\n{}", d.log_tail(60));
            }
        }
    }
}
