//! mailproxyctl: control a running mailproxyd over its management socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use mailproxy_proto::{decode_key, encode_key, locate, Client, ClientError, Level};
use serde_json::json;

mod table;

/// Exit code: the daemon answered with an error.
const EXIT_SERVER: u8 = 1;
/// Exit code: bad command line or input (clap uses 2 too).
const EXIT_USAGE: u8 = 2;
/// Exit code: the daemon is not running (no socket, or nothing listening).
const EXIT_NOT_RUNNING: u8 = 3;
/// Exit code: any other failure (config file, I/O, protocol, timeout).
const EXIT_OTHER: u8 = 4;

/// How long to wait for the daemon to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

const AFTER_HELP: &str = "\
The socket is found with --socket, or else read from mailproxyd's config file
(--config or $MAILPROXYD_CONFIG; else ./katzenpost.toml if it exists, else
~/.config/mailproxy/mailproxyd.toml, which scripts/demo points at its config):
[Management] Path, by default <DataDir>/management_sock. The daemon must have [Management] Enable = true.

Keys are 32-byte X25519 public keys in hex or base64; output uses base64.

Exit codes: 0 ok, 1 the daemon refused (its message is printed), 2 usage
error, 3 the daemon is not running, 4 other errors (config, I/O, timeout).

`logs` streams what happens from now on (the daemon keeps no history):
events (message queued, sent, acknowledged, delivered, bounced, connection
up/down...) and log lines at --level or more severe. Give --follow to stream
until Ctrl-C, or --for SECONDS to stop after that long; with --json each line
is one JSON object.

Examples:
  mailproxyctl --config ~/.mailproxy/mailproxy.toml accounts
  mailproxyctl status
  mailproxyctl queue && mailproxyctl cancel alice@provider.example 12
  mailproxyctl password alice@provider.example          # the SMTP/POP3 login's password
  mailproxyctl password --reset alice@provider.example  # a new one; the old one stops working
  mailproxyctl logs --level debug --follow
  mailproxyctl set-recipient bob@provider.example 0d1c...e9
  mailproxyctl --json list-recipients | jq .
  mailproxyctl completions bash > ~/.local/share/bash-completion/completions/mailproxyctl";

#[derive(Debug, Parser)]
#[command(
    name = "mailproxyctl",
    version,
    about = "Control a running mailproxyd: status, queue, inbox, logs, recipient keys, accounts, passwords",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Management socket of the daemon.
    #[arg(
        long,
        short = 's',
        global = true,
        value_name = "PATH",
        env = "MAILPROXYD_SOCKET",
        conflicts_with = "config"
    )]
    socket: Option<PathBuf>,

    /// mailproxyd config file to read the socket path from.
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        env = "MAILPROXYD_CONFIG"
    )]
    config: Option<PathBuf>,

    /// Print machine-readable JSON on stdout (errors too, as {"error": ...}).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a recipient's public key.
    GetRecipient {
        /// The recipient, user@provider.
        address: String,
    },
    /// Add a recipient or replace its key (saved in the daemon's RecipientDir).
    SetRecipient {
        /// The recipient, user@provider.
        address: String,
        /// Its X25519 public key, hex or base64.
        key: String,
    },
    /// Forget a recipient (and delete its key file).
    RemoveRecipient {
        /// The recipient, user@provider.
        address: String,
    },
    /// List all recipients with their keys, sorted by address.
    ListRecipients,
    /// List the accounts with the public keys to register at their providers.
    Accounts,
    /// Re-read the recipient directory (like SIGHUP).
    Rescan,
    /// Print the daemon's version and protocol revision.
    Version,
    /// Per account: connection, PKI document, queue and inbox figures, last error.
    Status,
    /// List the outgoing messages with their progress and deadlines.
    Queue,
    /// Drop an outgoing message (the account and id as `queue` shows them).
    Cancel {
        /// The sending account, user@provider.
        account: String,
        /// The queue id.
        id: u64,
    },
    /// List the received messages (size, arrival, sender key; never contents).
    Inbox,
    /// Print an account's SMTP and POP3 password (its login is the account id).
    Password {
        /// The account, user@provider.
        account: String,
        /// Replace the password with a new one first; the old one stops working at once.
        #[arg(long)]
        reset: bool,
    },
    /// Stream events and log lines as they happen (needs --follow or --for).
    Logs {
        /// Log level: off (events only), error, warn, info, debug or trace.
        #[arg(long, short = 'l', default_value = "info", value_parser = parse_level)]
        level: Level,
        /// Stream until interrupted (Ctrl-C) or the daemon stops.
        #[arg(long, short = 'f', conflicts_with = "for_secs")]
        follow: bool,
        /// Stream for this many seconds, then stop.
        #[arg(long = "for", value_name = "SECONDS", id = "for_secs")]
        for_secs: Option<u64>,
    },
    /// Shut the daemon down gracefully.
    Shutdown,
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: Shell,
    },
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
    server_code: Option<u16>,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            server_code: None,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        match &e {
            ClientError::NotRunning { path, .. } => Failure::new(
                EXIT_NOT_RUNNING,
                format!(
                    "mailproxyd is not running (nothing listening on {}); start it, or check [Management] Enable = true",
                    path.display()
                ),
            ),
            ClientError::Server(status) => Failure {
                code: EXIT_SERVER,
                message: format!("mailproxyd: {}", status.text),
                server_code: Some(status.code.0),
            },
            ClientError::Request(_) => Failure::new(EXIT_USAGE, e.to_string()),
            _ => Failure::new(EXIT_OTHER, e.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "mailproxyctl", &mut script);
        return match emit(&String::from_utf8_lossy(&script)) {
            Err(e) => e.exit_code(),
            Ok(()) => ExitCode::SUCCESS,
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailproxyctl: {e}");
            return ExitCode::from(EXIT_OTHER);
        }
    };
    let json = cli.json;
    match runtime.block_on(run(cli)) {
        Ok(output) => {
            if !output.is_empty() {
                if let Err(e) = emit(&format!("{output}\n")) {
                    return e.exit_code();
                }
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            if json {
                let line = json!({ "error": f.message, "code": f.server_code });
                let _ = emit(&format!("{line}\n"));
            }
            eprintln!("mailproxyctl: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn parse_level(s: &str) -> Result<Level, String> {
    Level::parse(s)
        .ok_or_else(|| format!("unknown level '{s}' (off, error, warn, info, debug or trace)"))
}

fn socket_path(cli: &Cli) -> Result<PathBuf, Failure> {
    if let Some(path) = &cli.socket {
        return Ok(path.clone());
    }
    let config = cli.config.clone().unwrap_or_else(locate::default_config);
    let loc = locate::from_config_file(&config).map_err(|e| {
        Failure::new(
            EXIT_OTHER,
            format!("{e} (use --socket PATH or --config FILE to find the daemon)"),
        )
    })?;
    if !loc.enabled {
        eprintln!(
            "mailproxyctl: warning: [Management] Enable is not true in {}",
            config.display()
        );
    }
    Ok(loc.path)
}

async fn run(cli: Cli) -> Result<String, Failure> {
    // Validate input before contacting the daemon.
    let key = match &cli.command {
        Command::SetRecipient { key, .. } => Some(
            decode_key(key).map_err(|e| Failure::new(EXIT_USAGE, format!("invalid key: {e}")))?,
        ),
        _ => None,
    };
    if let Command::Logs {
        follow: false,
        for_secs: None,
        ..
    } = &cli.command
    {
        return Err(Failure::new(
            EXIT_USAGE,
            "logs streams from now on (the daemon keeps no history): give --follow to stream until Ctrl-C, or --for SECONDS",
        ));
    }
    let path = socket_path(&cli)?;
    let json = cli.json;
    if let Command::Logs {
        level, for_secs, ..
    } = &cli.command
    {
        return logs(&path, *level, for_secs.map(Duration::from_secs), json).await;
    }
    let work = async {
        let mut client = Client::connect(&path).await?;
        let out = match &cli.command {
            Command::GetRecipient { address } => {
                let key = client.get_recipient(address).await?;
                if json {
                    json!({ "address": address, "key": encode_key(&key) }).to_string()
                } else {
                    encode_key(&key)
                }
            }
            Command::SetRecipient { address, .. } => {
                client
                    .set_recipient(address, &key.unwrap_or_default())
                    .await?;
                ok_output(json)
            }
            Command::RemoveRecipient { address } => {
                client.remove_recipient(address).await?;
                ok_output(json)
            }
            Command::ListRecipients => {
                let list = client.list_recipients().await?;
                if json {
                    let items: Vec<_> = list
                        .iter()
                        .map(|(a, k)| json!({ "address": a, "key": encode_key(k) }))
                        .collect();
                    serde_json::Value::Array(items).to_string()
                } else {
                    list.iter()
                        .map(|(a, k)| format!("{a} {}", encode_key(k)))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            }
            Command::Accounts => {
                let accounts = client.accounts().await?;
                if json {
                    serde_json::to_string(&accounts).unwrap_or_default()
                } else {
                    accounts
                        .iter()
                        .map(|a| {
                            let user = a.account.rsplit_once('@').map_or(a.account.as_str(), |(u, _)| u);
                            format!(
                                "{}\n  link key:     {}\n  identity key: {}\n  register on the provider: ADD_USER {user} {}\n                            SET_USER_IDENTITY {user} {}",
                                a.account,
                                encode_key(&a.link_key),
                                encode_key(&a.identity_key),
                                hex::encode(a.link_key),
                                hex::encode(a.identity_key),
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            }
            Command::Rescan => {
                let summary = client.rescan().await?;
                if json {
                    json!({ "ok": true, "summary": summary }).to_string()
                } else {
                    summary
                }
            }
            Command::Version => {
                let version = client.version().await?;
                if json {
                    json!({ "daemon": version, "mailproxyctl": env!("CARGO_PKG_VERSION") })
                        .to_string()
                } else {
                    version
                }
            }
            Command::Status => {
                let list = client.status().await?;
                if json {
                    to_json(&list)
                } else {
                    table::status(&list)
                }
            }
            Command::Queue => {
                let items = client.queue().await?;
                if json {
                    to_json(&items)
                } else {
                    table::queue(&items)
                }
            }
            Command::Inbox => {
                let items = client.inbox().await?;
                if json {
                    to_json(&items)
                } else {
                    table::inbox(&items)
                }
            }
            Command::Cancel { account, id } => {
                client.cancel(account, *id).await?;
                ok_output(json)
            }
            Command::Password { account, reset } => {
                let password = client.password(account, *reset).await?;
                if *reset {
                    eprintln!(
                        "mailproxyctl: {account} has a new password; the old one no longer works"
                    );
                }
                if json {
                    json!({ "account": account, "password": password }).to_string()
                } else {
                    password
                }
            }
            Command::Shutdown => {
                client.shutdown().await?;
                if json {
                    ok_output(json)
                } else {
                    "mailproxyd is shutting down".to_owned()
                }
            }
            Command::Completions { .. } | Command::Logs { .. } => String::new(),
        };
        let _ = client.quit().await;
        Ok::<String, ClientError>(out)
    };
    match tokio::time::timeout(TIMEOUT, work).await {
        Ok(result) => result.map_err(Failure::from),
        Err(_) => Err(Failure::new(
            EXIT_OTHER,
            format!("mailproxyd did not answer within {}s", TIMEOUT.as_secs()),
        )),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| json!({ "error": e.to_string() }).to_string())
}

/// `logs`: prints stream lines as they arrive, until `limit` passes (or
/// forever), Ctrl-C, or the daemon closes the stream.
async fn logs(
    path: &std::path::Path,
    level: Level,
    limit: Option<Duration>,
    json: bool,
) -> Result<String, Failure> {
    let client = tokio::time::timeout(TIMEOUT, Client::connect(path))
        .await
        .map_err(|_| Failure::new(EXIT_OTHER, "mailproxyd did not answer"))??;
    let mut stream = tokio::time::timeout(TIMEOUT, client.subscribe(level))
        .await
        .map_err(|_| Failure::new(EXIT_OTHER, "mailproxyd did not answer"))??;
    eprintln!(
        "mailproxyctl: streaming events and log lines at {level} ({})",
        match limit {
            Some(d) => format!("for {}s", d.as_secs()),
            None => "Ctrl-C to stop".to_owned(),
        }
    );
    let deadline = async {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        let next = tokio::select! {
            _ = &mut deadline => break,
            _ = tokio::signal::ctrl_c() => break,
            next = stream.next() => next?,
        };
        let Some(line) = next else {
            return Err(Failure::new(
                EXIT_NOT_RUNNING,
                "mailproxyd closed the stream (it stopped)",
            ));
        };
        let text = match json {
            true => to_json(&line),
            false => table::stream_line(&line),
        };
        match emit(&format!("{text}\n")) {
            Ok(()) => {}
            // The reader went away (`| head`): stop quietly.
            Err(StdoutError::Closed) => break,
            Err(StdoutError::Other(e)) => return Err(Failure::new(EXIT_OTHER, e)),
        }
    }
    let _ = stream.quit().await;
    Ok(String::new())
}

/// Why stdout could not take the output.
enum StdoutError {
    /// The reader closed the pipe (`mailproxyctl queue | head -1`): not an
    /// error, the reader has what it wanted.
    Closed,
    /// Any other write error.
    Other(String),
}

impl StdoutError {
    fn exit_code(self) -> ExitCode {
        match self {
            StdoutError::Closed => ExitCode::SUCCESS,
            StdoutError::Other(e) => {
                eprintln!("mailproxyctl: {e}");
                ExitCode::from(EXIT_OTHER)
            }
        }
    }
}

/// Writes `text` to stdout and flushes it, telling a closed pipe (EPIPE)
/// from other failures instead of panicking as `println!` does.
fn emit(text: &str) -> Result<(), StdoutError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => StdoutError::Closed,
            _ => StdoutError::Other(format!("cannot write to stdout: {e}")),
        })
}

fn ok_output(json: bool) -> String {
    if json {
        json!({ "ok": true }).to_string()
    } else {
        String::new()
    }
}
