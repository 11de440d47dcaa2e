//! The mailproxyd binary: command line, umask, logging, signals.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mailproxyd::config::Config;
use mailproxyd::daemon;

/// Exit code for configuration errors.
const EXIT_CONFIG: u8 = 2;
/// Exit code for start-up and fatal runtime errors.
const EXIT_FATAL: u8 = 1;

/// mailproxyd: send and receive mail over a Katzenpost mix network with any
/// SMTP/POP3 mail client.
///
/// Runs until SIGINT or SIGTERM (clean shutdown, exit 0). SIGHUP re-reads the
/// recipient key directory. Exit codes: 0 ok, 1 fatal error, 2 config error.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Configuration file (TOML).
    #[arg(
        short = 'f',
        long = "config",
        value_name = "FILE",
        default_value = "katzenpost.toml"
    )]
    config: PathBuf,

    /// Generate the accounts' keys and SMTP/POP3 passwords (if missing),
    /// print the public keys to register with the provider and the
    /// passwords, and exit.
    #[arg(short = 'g', long = "generate")]
    generate: bool,

    /// Check the configuration file and exit.
    #[arg(long = "check-config")]
    check_config: bool,

    /// Read a password from standard input (one line), print its Argon2id
    /// hash for `[[Account]] PasswordHash`, and exit.
    #[arg(long = "hash-password", exclusive = true)]
    hash_password: bool,

    #[command(flatten)]
    registration: RegistrationArgs,
}

/// `-r` and its options, spelled as the original's (`-account` or
/// `--account`).
#[derive(Debug, clap::Args)]
struct RegistrationArgs {
    /// Register a new account with its provider over HTTP: create DataDir,
    /// generate the keys, write DataDir/mailproxy.toml and post the keys to
    /// the provider's /registration.
    #[arg(short = 'r', long = "register")]
    register: bool,
    /// With -r: the user name.
    #[arg(long = "account", requires = "register")]
    account: Option<String>,
    /// With -r: the provider's name.
    #[arg(long = "provider", requires = "register")]
    provider: Option<String>,
    /// With -r: the provider's Ed25519 key (hex or base64; pinned).
    #[arg(long = "providerKey", requires = "register")]
    provider_key: Option<String>,
    /// With -r: the nonvoting authority's host:port.
    #[arg(long = "authority", requires = "register")]
    authority: Option<String>,
    /// With -r: the authority's Ed25519 key (hex or base64).
    #[arg(long = "authorityKey", requires = "register")]
    authority_key: Option<String>,
    /// With -r: the provider's registration host:port.
    #[arg(long = "registrationAddr", requires = "register")]
    registration_addr: Option<String>,
    /// With -r: plain HTTP (test networks only).
    #[arg(long = "registrationWithoutHttps", requires = "register")]
    registration_without_https: bool,
    /// With -r: also trust this CA certificate (PEM) for HTTPS, e.g. the one
    /// `testnet info` names.
    #[arg(long = "registrationCA", requires = "register")]
    registration_ca: Option<PathBuf>,
    /// With -r: use Tor for everything (tor+socks5, onion transports).
    #[arg(long = "onion", requires = "register")]
    onion: bool,
    /// With -r -onion: Tor's SOCKS5 address.
    #[arg(long = "torSocksAddr", default_value = "127.0.0.1:9050")]
    tor_socks_addr: String,
    /// With -r: the new data directory (absolute).
    #[arg(long = "dataDir", requires = "register")]
    data_dir: Option<PathBuf>,
}

/// The long options the original spelled with one dash.
const GO_STYLE: [&str; 11] = [
    "account",
    "provider",
    "providerKey",
    "authority",
    "authorityKey",
    "registrationAddr",
    "registrationWithoutHttps",
    "registrationCA",
    "onion",
    "torSocksAddr",
    "dataDir",
];

/// `-account x` and `-account=x` become `--account x`, `--account=x`.
fn go_style_args() -> Vec<std::ffi::OsString> {
    std::env::args_os()
        .map(|a| {
            let Some(s) = a.to_str() else { return a };
            let Some(rest) = s.strip_prefix('-').filter(|r| !r.starts_with('-')) else {
                return a;
            };
            let name = rest.split('=').next().unwrap_or(rest);
            if GO_STYLE.contains(&name) {
                format!("-{s}").into()
            } else {
                a
            }
        })
        .collect()
}

/// Runs `-r`.
fn register(args: RegistrationArgs) -> ExitCode {
    let missing = |name: &str| {
        eprintln!("mailproxyd: registration: -{name} is required with -r");
        ExitCode::from(EXIT_CONFIG)
    };
    macro_rules! required {
        ($field:ident, $name:literal) => {
            match args.$field {
                Some(v) => v,
                None => return missing($name),
            }
        };
    }
    let registration = mailproxyd::register::Registration {
        account: required!(account, "account"),
        provider: required!(provider, "provider"),
        provider_key: required!(provider_key, "providerKey"),
        authority: required!(authority, "authority"),
        authority_key: required!(authority_key, "authorityKey"),
        registration_addr: required!(registration_addr, "registrationAddr"),
        without_https: args.registration_without_https,
        ca_file: args.registration_ca,
        onion: args.onion,
        tor_socks_addr: args.tor_socks_addr,
        data_dir: required!(data_dir, "dataDir"),
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let path = match runtime.block_on(registration.run()) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("mailproxyd: {e}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    drop(runtime);
    // Registered: the account's generated password, as -g makes it.
    let generated = Config::load(&path)
        .map_err(|e| e.to_string())
        .and_then(|config| daemon::generate_keys(config).map_err(|e| e.to_string()))
        .and_then(|list| {
            list.into_iter()
                .next()
                .ok_or_else(|| "no account in the config".to_owned())
        });
    let (info, login) = match generated {
        Ok(first) => first,
        Err(e) => {
            eprintln!(
                "mailproxyd: registered, but the account's password could not be made ({e}); `mailproxyd -g -f {}` retries",
                path.display()
            );
            return ExitCode::from(EXIT_FATAL);
        }
    };
    let password = match &login {
        mailproxyd::directory::LoginPassword::Generated(p) => p.as_str(),
        _ => "(set in the config)",
    };
    println!(
        "mailproxyd: registered {id}\n  config:   {config}\n  password: {password}   (SMTP AUTH and POP3, user {id}; again: mailproxyd -g -f {config})\nstart with: mailproxyd -f {config}",
        id = info.account,
        config = path.display(),
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    // SAFETY: umask only changes this process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
    mailproxyd::memory::limit_malloc_arenas();
    if !mailproxyd::memory::no_core_dumps() {
        eprintln!("mailproxyd: warning: could not turn core dumps off");
    }
    let args = Args::parse_from(go_style_args());
    if args.hash_password {
        return hash_password();
    }
    if args.registration.register {
        return register(args.registration);
    }
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mailproxyd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check_config {
        println!("mailproxyd: {} is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    // The log file may live in DataDir: create (or check) it first.
    if let Err(e) = mailproxyd::keys::ensure_private_dir(&config.proxy.data_dir) {
        eprintln!("mailproxyd: DataDir: {e}");
        return ExitCode::from(EXIT_FATAL);
    }
    let generate_only = args.generate || config.debug.generate_only;
    if let Err(e) = mailproxyd::logging::init_with(&config.logging, generate_only) {
        eprintln!("mailproxyd: {e}");
        return ExitCode::from(EXIT_FATAL);
    }
    if generate_only {
        return generate(config);
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        match termination() {
            Ok(signals) => daemon::run(config, signals).await,
            Err(e) => Err(daemon::DaemonError::Signal(e)),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mailproxyd failed");
            eprintln!("mailproxyd: {e}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

/// The tokio runtime; on failure, the error is printed and the exit code
/// returned.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("mailproxyd: cannot start the runtime: {e}");
            ExitCode::from(EXIT_FATAL)
        })
}

/// Installs the SIGINT/SIGTERM handlers now (before anything can tell the
/// world the daemon is up) and returns a future completing on either.
fn termination() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

fn generate(config: Config) -> ExitCode {
    let accounts = config.accounts.clone();
    match daemon::generate_keys(config) {
        Ok(infos) => {
            for (account, (info, login)) in accounts.iter().zip(&infos) {
                print!("{}", daemon::registration_text(account, info, login));
            }
            if infos.is_empty() {
                println!("no [[Account]] configured");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailproxyd: {e}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

fn hash_password() -> ExitCode {
    let mut line = zeroize::Zeroizing::new(String::new());
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        eprintln!("mailproxyd: cannot read the password: {e}");
        return ExitCode::from(EXIT_FATAL);
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("mailproxyd: empty password");
        return ExitCode::from(EXIT_FATAL);
    }
    match mailproxyd::auth::hash_password(password) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailproxyd: {e}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}
