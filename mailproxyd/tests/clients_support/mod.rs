//! Test-only harness: an in-memory [`Directory`], SMTP and POP3 servers on
//! port 0, and a loopback that moves queued messages into local inboxes in
//! place of the network engine. This code exists only in tests.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mailproxyd::pop3::{self, Pop3Settings};
use mailproxyd::smtp::{self, SmtpSettings};
use mailproxyd::store::{AccountInfo, Directory, KeySource, Store};

pub struct TestAccount {
    pub info: AccountInfo,
    pub password: Option<String>,
    pub store: Store,
}

pub struct TestDirectory {
    pub accounts: HashMap<String, TestAccount>,
    pub known: HashSet<String>,
}

impl Directory for TestDirectory {
    fn account(&self, id: &str) -> Option<AccountInfo> {
        self.accounts.get(id).map(|a| a.info.clone())
    }
    fn recipient_known(&self, addr: &str) -> bool {
        self.known.contains(addr) || self.accounts.contains_key(addr)
    }
    fn verify_password(&self, account: &str, password: &[u8]) -> bool {
        self.accounts
            .get(account)
            .and_then(|a| a.password.as_ref())
            .is_some_and(|p| p.as_bytes() == password)
    }
    fn store(&self, account: &str) -> Option<Store> {
        self.accounts.get(account).map(|a| a.store.clone())
    }
}

/// Servers running on their own runtime thread (two workers) until
/// [`ServerThread::stop`] or drop.
pub struct ServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Runs `run` on a new runtime thread and waits for the value it sends
    /// (the addresses it bound). `run` is handed a receiver that completes
    /// when the servers are to stop.
    pub fn spawn<T, F, Fut>(run: F) -> (ServerThread, T)
    where
        T: Send + 'static,
        F: FnOnce(tokio::sync::oneshot::Receiver<()>, std::sync::mpsc::Sender<T>) -> Fut
            + Send
            + 'static,
        Fut: Future<Output = ()>,
    {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(run(stop_rx, tx));
        });
        let value = rx.recv().expect("the server thread started");
        let server = ServerThread {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        (server, value)
    }

    /// Stops the servers and joins the thread.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            // A server that panicked fails the test, unless it is failing
            // already (a second panic would abort).
            if t.join().is_err() && !std::thread::panicking() {
                panic!("the server thread panicked");
            }
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Harness {
    pub data_dir: tempfile::TempDir,
    pub dir: Arc<TestDirectory>,
    pub smtp: SocketAddr,
    pub pop3: SocketAddr,
    server: ServerThread,
}

/// (id, password, insecure_key_discovery)
pub type AccountSpec<'a> = (&'a str, Option<&'a str>, bool);

impl Harness {
    pub fn start(accounts: &[AccountSpec], smtp_settings: SmtpSettings) -> Harness {
        Self::start_with(accounts, smtp_settings, Pop3Settings::default(), &[])
    }

    pub fn start_with(
        accounts: &[AccountSpec],
        smtp_settings: SmtpSettings,
        pop3_settings: Pop3Settings,
        known: &[&str],
    ) -> Harness {
        let data_dir = tempfile::tempdir().unwrap();
        let mut map = HashMap::new();
        for (id, pw, ikd) in accounts {
            let d = data_dir.path().join(id);
            std::fs::create_dir_all(&d).unwrap();
            let store = Store::open(&d, &KeySource::KeyFile).unwrap();
            map.insert(
                id.to_string(),
                TestAccount {
                    info: AccountInfo {
                        id: id.to_string(),
                        password_required: pw.is_some(),
                        insecure_key_discovery: *ikd,
                    },
                    password: pw.map(str::to_owned),
                    store,
                },
            );
        }
        let dir = Arc::new(TestDirectory {
            accounts: map,
            known: known.iter().map(|s| s.to_string()).collect(),
        });
        let d2 = dir.clone();
        let (server, (smtp, pop3)) = ServerThread::spawn(move |stop_rx, addr_tx| async move {
            let sl = smtp::bind("127.0.0.1:0".parse().unwrap(), false)
                .await
                .unwrap();
            let pl = smtp::bind("127.0.0.1:0".parse().unwrap(), false)
                .await
                .unwrap();
            addr_tx
                .send((sl.local_addr().unwrap(), pl.local_addr().unwrap()))
                .unwrap();
            let (tx1, rx1) = tokio::sync::watch::channel(false);
            let mut rx2 = rx1.clone();
            let mut rx1 = rx1;
            let dir: Arc<dyn Directory> = d2;
            let s = tokio::spawn(smtp::serve(sl, dir.clone(), smtp_settings, async move {
                let _ = rx1.wait_for(|v| *v).await;
            }));
            let p = tokio::spawn(pop3::serve(pl, dir, pop3_settings, async move {
                let _ = rx2.wait_for(|v| *v).await;
            }));
            let _ = stop_rx.await;
            let _ = tx1.send(true);
            let _ = s.await;
            let _ = p.await;
        });
        Harness {
            data_dir,
            dir,
            smtp,
            pop3,
            server,
        }
    }

    pub fn store(&self, id: &str) -> Store {
        self.dir.accounts[id].store.clone()
    }

    /// Moves every queued message of every account into the recipient's
    /// inbox when the recipient is a local account (test stand-in for the
    /// network). Returns how many were delivered.
    pub fn loop_queues(&self) -> usize {
        let mut n = 0;
        for acct in self.dir.accounts.values() {
            for id in acct.store.queue_ids().unwrap() {
                let e = acct.store.queue_get(id).unwrap().unwrap();
                if let Some(to) = self.dir.accounts.get(&e.recipient) {
                    let msg = acct.store.read_message(e.message.blob).unwrap();
                    to.store.deliver(&msg, e.created).unwrap();
                    acct.store.queue_remove(id).unwrap();
                    n += 1;
                }
            }
        }
        n
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }
}

impl Drop for Harness {
    // The servers stop before the fields drop (the data directory first).
    fn drop(&mut self) {
        self.stop();
    }
}

/// A tiny line-oriented TCP client for transcripts.
pub struct Client {
    pub r: std::io::BufReader<std::net::TcpStream>,
    pub w: std::net::TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        Client {
            r: std::io::BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }
    pub fn send(&mut self, data: &[u8]) {
        use std::io::Write;
        self.w.write_all(data).unwrap();
    }
    pub fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }
    /// Reads one SMTP reply (all continuation lines); returns the lines.
    pub fn reply(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "connection closed; got so far {out:?}");
            let more = l.as_bytes().get(3) == Some(&b'-');
            out.push(l.trim_end().to_owned());
            if !more {
                return out;
            }
        }
    }
    pub fn code(&mut self) -> u16 {
        let r = self.reply();
        r.last().unwrap()[..3].parse().unwrap()
    }
    /// Reads a POP3 multi-line body after a +OK line, unstuffed, lines joined by CRLF.
    pub fn multiline(&mut self) -> Vec<u8> {
        use std::io::BufRead;
        let mut out = Vec::new();
        loop {
            let mut l = Vec::new();
            self.r.read_until(b'\n', &mut l).unwrap();
            assert!(!l.is_empty(), "closed inside a multi-line response");
            if l == b".\r\n" {
                return out;
            }
            if l.starts_with(b"..") {
                l.remove(0);
            }
            out.extend_from_slice(&l);
        }
    }
    pub fn is_closed(&mut self) -> bool {
        use std::io::Read;
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

/// Logs in to POP3 as soon as the maildrop lock is free: the server releases
/// it when it has finished a dropped session (and whatever that session was
/// going to commit), so this is how a test waits for that. Panics on any
/// other answer, or if the lock is still held after 20 s.
pub fn pop3_login_once_released(addr: SocketAddr, user: &str, pass: &str) -> Client {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut c = Client::connect(addr);
        let greeting = c.line();
        assert!(greeting.starts_with("+OK"), "{greeting}");
        c.send(format!("USER {user}\r\nPASS {pass}\r\n").as_bytes());
        let r = c.line();
        assert!(r.starts_with("+OK"), "{r}");
        let r = c.line();
        if r.starts_with("+OK") {
            return c;
        }
        assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
        assert!(
            std::time::Instant::now() < deadline,
            "the maildrop of {user} is still locked"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Every file under `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Asserts that `needle` occurs in no file under `dir`.
pub fn assert_absent(dir: &Path, needle: &[u8]) {
    for f in all_files(dir) {
        let data = std::fs::read(&f).unwrap();
        assert!(
            !data.windows(needle.len()).any(|w| w == needle),
            "marker {:?} found in {}",
            String::from_utf8_lossy(needle),
            f.display()
        );
    }
}
