//! A whole test world: a temp dir, the testnet, and mailproxyd daemons whose
//! accounts are registered at their providers and (by default) know each
//! other's keys.

use std::path::PathBuf;
use std::time::Duration;

use testnet::config::Params;

use crate::daemon::{Daemon, DaemonOptions};
use crate::net::{self, Net};
use crate::wait::wait_until;

/// Bound for the copies still in flight to settle (loaded machine).
const SETTLE: Duration = Duration::from_secs(300);

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

    /// Account `id`'s `status` (JSON), or why there is none (its daemon
    /// restarting, say).
    pub fn status(&self, id: &str) -> Result<serde_json::Value, String> {
        let (ok, v) = self.daemon_of(id).ctl(&["status"]);
        if !ok {
            return Err(format!("mailproxyctl status failed: {v}"));
        }
        v.as_array()
            .and_then(|a| a.iter().find(|s| s["account"] == id).cloned())
            .ok_or_else(|| format!("no status for {id}: {v}"))
    }

    /// Waits until `sender`'s queue is empty (every block acknowledged: no
    /// retransmission is coming), then until every packet it sent to
    /// `recipients` has been spooled or dropped, but for at most
    /// `lost_at_most` lost without a count (see
    /// [`Net::packets_in_flight_at_least`]; the daemons must send nothing
    /// else). Call it once every recipient holds what it was sent.
    pub fn wait_every_copy_spooled(&self, sender: &str, recipients: &[&str], lost_at_most: u64) {
        self.wait_settled(sender, recipients, lost_at_most, false);
    }

    /// [`World::wait_every_copy_spooled`], and then until the recipients'
    /// spools are empty: every copy has been through the recipient's
    /// engine, so a duplicate delivery would be in its inbox.
    pub fn wait_every_copy_retrieved(&self, sender: &str, recipients: &[&str], lost_at_most: u64) {
        self.wait_settled(sender, recipients, lost_at_most, true);
    }

    fn wait_settled(&self, sender: &str, recipients: &[&str], lost_at_most: u64, retrieved: bool) {
        let start = std::time::Instant::now();
        wait_until(
            &format!("{sender}'s queue to be empty"),
            SETTLE,
            Duration::from_millis(250),
            || {
                let s = self.status(sender)?;
                match (s["queued"].as_u64(), s["in_flight"].as_u64()) {
                    (Some(0), Some(0)) => Ok(()),
                    (q, f) => Err(format!("queued {q:?}, in flight {f:?}")),
                }
            },
        );
        let provider_of = |id: &str| id.split_once('@').expect("user@provider").1.to_owned();
        let sender_provider = provider_of(sender);
        // Each recipient at the sender's provider holds a block spooled there.
        let local = recipients
            .iter()
            .filter(|r| provider_of(r) == sender_provider)
            .count() as u64;
        wait_until(
            &format!(
                "every copy {sender} sent to be spooled or dropped{}",
                if retrieved { " and retrieved" } else { "" }
            ),
            SETTLE,
            Duration::from_millis(100),
            || {
                let in_flight = self.net.packets_in_flight_at_least(&sender_provider, local);
                let spooled: Vec<(&str, usize)> = if retrieved {
                    recipients
                        .iter()
                        .map(|r| {
                            let (user, provider) = r.split_once('@').expect("user@provider");
                            (*r, self.net.spool_len(provider, user))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                if in_flight <= lost_at_most as i64 && spooled.iter().all(|(_, n)| *n == 0) {
                    eprintln!(
                        "every copy {sender} sent settled after {:?} (in flight at least \
                         {in_flight}, allowed lost {lost_at_most})",
                        start.elapsed()
                    );
                    Ok(())
                } else {
                    Err(format!(
                        "at least {in_flight} packets in flight (allowed lost: {lost_at_most}), \
                         left in spools: {spooled:?}"
                    ))
                }
            },
        );
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
