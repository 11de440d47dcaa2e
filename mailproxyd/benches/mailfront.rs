//! Helper binary for scripts/bench-smtp and scripts/bench-pop3 (not a
//! criterion bench; `harness = false`). Modes:
//!
//! - `serve <datadir>`: SMTP + POP3 servers on free loopback ports for the
//!   accounts alice@example.org and bob@example.org (every recipient known);
//!   prints `smtp=<port> pop3=<port>` and runs until stdin closes. POP3
//!   requires the password `secret` (checked against its Argon2id hash, as
//!   the daemon does); SMTP takes mail without AUTH, as with
//!   `Authentication = "none"`, because Postfix's smtp-source cannot log in.
//!   A second line `imap=<port>` gives the IMAP server (same password as
//!   POP3), for scripts/bench-imap.
//! - `count <datadir> <account>`: queue and inbox sizes of an account.
//! - `commit-baseline <n> <bytes>`: one durable redb commit per message,
//!   the bare cost the SMTP ingest is compared with.
//! - `fill <datadir> <n> <bytes> <maildir>`: n messages into bob's inbox, and
//!   the same bytes as files in `<maildir>/new` for dovecot.
//! - `rss <datadir> <n>`: RSS with n messages in the inbox and n in the queue,
//!   before and after serving a POP3 session over all of them.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use mailproxyd::store::{AccountInfo, Directory, KeySource, NewQueueEntry, Store};

const ACCOUNTS: [&str; 2] = ["alice@example.org", "bob@example.org"];

/// Both accounts' POP3 password (dovecot's static password in bench-pop3).
const PASSWORD: &str = "secret";

#[derive(Clone)]
struct BenchDir {
    stores: Vec<(String, Store)>,
    /// Argon2id hash of [`PASSWORD`] when logins need it.
    password_hash: Option<String>,
}

impl BenchDir {
    /// The same accounts, requiring [`PASSWORD`].
    fn with_password(&self) -> BenchDir {
        BenchDir {
            password_hash: Some(mailproxyd::auth::hash_password(PASSWORD).unwrap()),
            ..self.clone()
        }
    }
}

impl Directory for BenchDir {
    fn account(&self, id: &str) -> Option<AccountInfo> {
        self.stores
            .iter()
            .find(|(a, _)| a == id)
            .map(|(a, _)| AccountInfo {
                id: a.clone(),
                password_required: self.password_hash.is_some(),
                insecure_key_discovery: false,
            })
    }
    fn recipient_known(&self, _addr: &str) -> bool {
        true
    }
    fn verify_password(&self, _: &str, password: &[u8]) -> bool {
        match (&self.password_hash, std::str::from_utf8(password)) {
            (Some(hash), Ok(p)) => mailproxyd::auth::verify_password(hash, p),
            _ => false,
        }
    }
    fn store(&self, id: &str) -> Option<Store> {
        self.stores
            .iter()
            .find(|(a, _)| a == id)
            .map(|(_, s)| s.clone())
    }
}

fn open_all(dir: &Path) -> BenchDir {
    BenchDir {
        stores: ACCOUNTS
            .iter()
            .map(|a| {
                let d = dir.join(a);
                std::fs::create_dir_all(&d).unwrap();
                (a.to_string(), Store::open(&d, &KeySource::KeyFile).unwrap())
            })
            .collect(),
        password_hash: None,
    }
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m = format!("From: alice@example.org\r\nTo: bob@example.org\r\nSubject: bench {i}\r\nMessage-ID: <{i}@bench>\r\n\r\n").into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    while m.len() < size - 2 {
        m.push(b'x');
    }
    m.extend_from_slice(b"\r\n");
    m
}

/// SMTP over `bd` as it is, POP3 over `bd` requiring [`PASSWORD`].
async fn serve(bd: &BenchDir) -> (u16, u16, tokio::sync::watch::Sender<bool>) {
    let dir: Arc<dyn Directory> = Arc::new(bd.clone());
    let pop3_dir: Arc<dyn Directory> = Arc::new(bd.with_password());
    let sl = mailproxyd::smtp::bind("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let pl = mailproxyd::smtp::bind("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let ports = (
        sl.local_addr().unwrap().port(),
        pl.local_addr().unwrap().port(),
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let (mut r1, mut r2) = (rx.clone(), rx);
    tokio::spawn(mailproxyd::smtp::serve(
        sl,
        dir.clone(),
        Default::default(),
        async move {
            let _ = r1.wait_for(|v| *v).await;
        },
    ));
    tokio::spawn(mailproxyd::pop3::serve(
        pl,
        pop3_dir,
        Default::default(),
        async move {
            let _ = r2.wait_for(|v| *v).await;
        },
    ));
    (ports.0, ports.1, tx)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["serve", dir] => {
            // As the daemon does (MALLOC_ARENA_MAX=16 in the environment
            // undoes it, for an A/B run).
            mailproxyd::memory::limit_malloc_arenas();
            let bd = open_all(Path::new(dir));
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let (s, p, stop) = serve(&bd).await;
                println!("smtp={s} pop3={p}");
                let il = mailproxyd::smtp::bind("127.0.0.1:0".parse().unwrap(), false)
                    .await
                    .unwrap();
                println!("imap={}", il.local_addr().unwrap().port());
                let imap_dir: Arc<dyn Directory> = Arc::new(bd.with_password());
                let mut r = stop.subscribe();
                tokio::spawn(mailproxyd::imap::serve(
                    il,
                    imap_dir,
                    Default::default(),
                    async move {
                        let _ = r.wait_for(|v| *v).await;
                    },
                ));
                std::io::stdout().flush().unwrap();
                tokio::task::spawn_blocking(|| {
                    let mut sink = Vec::new();
                    let _ = std::io::stdin().read_to_end(&mut sink);
                })
                .await
                .unwrap();
                let _ = stop.send(true);
            });
        }
        ["count", dir, account] => {
            let s = Store::open(&Path::new(dir).join(account), &KeySource::KeyFile).unwrap();
            println!(
                "queue={} inbox={}",
                s.queue_len().unwrap(),
                s.inbox_len().unwrap()
            );
        }
        ["commit-baseline", n, bytes] => {
            let n: usize = n.parse().unwrap();
            let value = vec![0x5au8; bytes.parse().unwrap()];
            let d = tempfile::tempdir().unwrap();
            let db = redb::Database::create(d.path().join("b.redb")).unwrap();
            const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
            let t0 = Instant::now();
            for i in 0..n as u64 {
                let tx = db.begin_write().unwrap();
                tx.open_table(T)
                    .unwrap()
                    .insert(i, value.as_slice())
                    .unwrap();
                tx.commit().unwrap();
            }
            let secs = t0.elapsed().as_secs_f64();
            println!("{:.0}", n as f64 / secs);
        }
        ["fill", dir, n, bytes, maildir] => {
            let bd = open_all(Path::new(dir));
            let bob = bd.store("bob@example.org").unwrap();
            let new = PathBuf::from(maildir).join("new");
            std::fs::create_dir_all(&new).unwrap();
            let size: usize = bytes.parse().unwrap();
            for i in 0..n.parse::<usize>().unwrap() {
                let m = message(i, size);
                bob.deliver(&m, 1).unwrap();
                std::fs::write(new.join(format!("{}.M{i}P1.bench", 1_700_000_000 + i)), &m)
                    .unwrap();
            }
        }
        ["rss", dir, n] => {
            let n: usize = n.parse().unwrap();
            let before = rss_kib();
            let bd = open_all(Path::new(dir));
            let alice = bd.store("alice@example.org").unwrap();
            let bob = bd.store("bob@example.org").unwrap();
            let opened = rss_kib();
            for i in 0..n {
                alice
                    .enqueue(
                        "alice@example.org",
                        &message(i, 2048),
                        &[NewQueueEntry {
                            recipient: "bob@example.org".into(),
                            created: 1,
                            bounce_at: 2,
                            unreliable: false,
                        }],
                    )
                    .unwrap();
                bob.deliver(&message(i, 20 * 1024), 1).unwrap();
            }
            let filled = rss_kib();
            let rt = tokio::runtime::Runtime::new().unwrap();
            let (_, p, _stop) = rt.block_on(serve(&bd));
            // One POP3 session: UIDL and RETR of every message.
            let sock = std::net::TcpStream::connect(("127.0.0.1", p)).unwrap();
            let mut r = std::io::BufReader::new(sock.try_clone().unwrap());
            let mut w = sock;
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            w.write_all(format!("USER bob@example.org\r\nPASS {PASSWORD}\r\nUIDL\r\n").as_bytes())
                .unwrap();
            let mut bytes = 0usize;
            let mut read_multi = |r: &mut std::io::BufReader<std::net::TcpStream>| {
                let mut l = Vec::new();
                loop {
                    l.clear();
                    r.read_until(b'\n', &mut l).unwrap();
                    if l == b".\r\n" {
                        break;
                    }
                    bytes += l.len();
                }
            };
            for _ in 0..3 {
                line.clear();
                r.read_line(&mut line).unwrap();
            }
            read_multi(&mut r);
            for i in 1..=n {
                w.write_all(format!("RETR {i}\r\n").as_bytes()).unwrap();
                line.clear();
                r.read_line(&mut line).unwrap();
                assert!(line.starts_with("+OK"), "{line}");
                read_multi(&mut r);
            }
            w.write_all(b"QUIT\r\n").unwrap();
            let served = rss_kib();
            println!(
                "rss_kib start={before} opened={opened} after_fill={filled} after_pop3_session={served} \
                 inbox={} queue={} inbox_bytes={} pop3_bytes_served={bytes}",
                bob.inbox_len().unwrap(),
                alice.queue_len().unwrap(),
                n * 20 * 1024
            );
        }
        _ => {
            eprintln!("usage: mailfront serve|count|commit-baseline|fill|rss ...");
            std::process::exit(2);
        }
    }
}
