//! `testnet`: run a local Katzenpost 2019 network.
//!
//! * `testnet up --dir D` creates (first time) and runs an authority, three
//!   layers of two mixes and two providers on 127.0.0.1, and prints what a
//!   mailproxyd account needs. Ctrl-C, SIGTERM or `testnet down` stop it.
//!   With `--authorities N` (N >= 3) it runs N voting authority peers
//!   instead, which agree on one document per epoch, each signing it.
//! * `testnet add-user --dir D --provider provider1 --user alice --link-key K
//!   [--identity-key K]` registers an account at a provider.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use testnet::config::{Params, Role};
use testnet::network::{init, Network, Shape};

#[derive(Parser)]
#[command(
    version,
    about = "A local Katzenpost (2019 profile) network for demos and tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create (if needed) and run the network in DIR until Ctrl-C or `testnet down`.
    Up {
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        /// Mixes per layer (3 layers).
        #[arg(long, default_value_t = 2)]
        mixes_per_layer: usize,
        /// Epoch period in seconds (the real network used 10800).
        #[arg(long)]
        epoch_secs: Option<u64>,
        /// Turn the providers' per-client rate limiter off.
        #[arg(long)]
        no_rate_limit: bool,
        /// Run N voting authority peers (N >= 3) instead of one nonvoting
        /// authority (only when the network is created).
        #[arg(long)]
        authorities: Option<usize>,
        /// Providers serve HTTP registration (`POST /registration`, as for
        /// `mailproxyd -r`; only when the network is created).
        #[arg(long)]
        registration: bool,
    },
    /// Stop the network running in DIR.
    Down {
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
    },
    /// Register an account's link key (and identity key) at a provider.
    AddUser {
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        user: String,
        /// X25519 link public key, hex or base64.
        #[arg(long)]
        link_key: String,
        /// X25519 identity public key, hex or base64.
        #[arg(long)]
        identity_key: Option<String>,
    },
    /// Print what mailproxyd needs to use the network in DIR.
    Info {
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TESTNET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Cmd::Up {
            dir,
            mixes_per_layer,
            epoch_secs,
            no_rate_limit,
            authorities,
            registration,
        } => up(
            &dir,
            mixes_per_layer,
            epoch_secs,
            no_rate_limit,
            authorities,
            registration,
        ),
        Cmd::Down { dir } => down(&dir),
        Cmd::AddUser {
            dir,
            provider,
            user,
            link_key,
            identity_key,
        } => add_user(&dir, &provider, &user, &link_key, identity_key.as_deref()),
        Cmd::Info { dir } => {
            let spec = testnet::config::NetworkSpec::load(&dir)?;
            // Into a closed pipe (`testnet info | head -1`): done, not a panic.
            match std::io::stdout().write_all(info(&spec, &dir).as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.map_err(Into::into),
            }
        }
    }
}

fn info(spec: &testnet::config::NetworkSpec, dir: &Path) -> String {
    let mut s = String::new();
    s += "# For mailproxyd's configuration:\n";
    s += &testnet::config::authority_block(spec, "testnet");
    s += "# Providers (the domain part of addresses):";
    for n in spec.nodes.iter().filter(|n| n.role == Role::Provider) {
        s += &format!(" {}", n.name);
    }
    s += "\n";
    for n in spec.nodes.iter() {
        if let Some(addr) = n.registration {
            s += &format!(
                "# {} registers accounts at http(s)://{addr}{}\n",
                n.name,
                testnet::registration::PATH
            );
        }
    }
    if spec.nodes.iter().any(|n| n.registration.is_some()) {
        let ca = std::path::absolute(dir.join(testnet::registration::CA_FILE))
            .unwrap_or_else(|_| dir.join(testnet::registration::CA_FILE));
        s += &format!(
            "# (https on the same port) its CA certificate: {}\n",
            ca.display()
        );
        // -r takes a nonvoting authority only.
        if !spec.is_voting() {
            s += "# A new account, with USER and DATADIR filled in:\n";
            for n in spec.nodes.iter() {
                let Some(addr) = n.registration else { continue };
                s += &format!(
                    "#   mailproxyd -r -account USER -provider {} -providerKey {} -authority {} -authorityKey {} -registrationAddr {addr} -registrationCA {} -dataDir DATADIR\n",
                    n.name,
                    n.identity_public,
                    spec.authority.address,
                    spec.authority.identity_public,
                    ca.display()
                );
            }
        }
    }
    s
}

fn up(
    dir: &Path,
    mixes_per_layer: usize,
    epoch_secs: Option<u64>,
    no_rate_limit: bool,
    authorities: Option<usize>,
    registration: bool,
) -> Result<()> {
    let mut params = Params::demo();
    if let Some(e) = epoch_secs {
        params.epoch_period_secs = e;
    }
    let shape = Shape {
        params,
        mixes_per_layer,
        voting_authorities: authorities.unwrap_or(0),
        registration,
        ..Shape::default()
    };
    let spec =
        init(dir, &shape).with_context(|| format!("creating the network in {}", dir.display()))?;
    let pid_file = dir.join("testnet.pid");
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))?;
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let net = Network::start(dir, !no_rate_limit).await?;
        net.wait_ready(Duration::from_secs(60)).await?;
        println!("testnet is up in {} ({} nodes)", dir.display(), spec.nodes.len());
        print!("{}", info(&spec, dir));
        println!("# Register an account: testnet add-user --dir {} --provider provider1 --user alice --link-key <hex> --identity-key <hex>", dir.display());
        let _ = std::io::stdout().flush();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        println!("testnet: stopping");
        net.shutdown().await;
        anyhow::Ok(())
    });
    let _ = std::fs::remove_file(&pid_file);
    result
}

fn down(dir: &Path) -> Result<()> {
    let pid_file = dir.join("testnet.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("no running testnet in {} (no testnet.pid)", dir.display()))?
        .trim()
        .parse()
        .context("testnet.pid is not a process id")?;
    // SAFETY: kill(2) with a plain pid and signal number has no memory-safety concerns.
    let r = unsafe { libc::kill(pid, libc::SIGTERM) };
    if r != 0 {
        let _ = std::fs::remove_file(&pid_file);
        bail!("testnet process {pid} is not running");
    }
    for _ in 0..100 {
        if !pid_file.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("testnet process {pid} did not stop within 10 s")
}

fn add_user(
    dir: &Path,
    provider: &str,
    user: &str,
    link: &str,
    identity: Option<&str>,
) -> Result<()> {
    let sock = dir.join(provider).join("management_sock");
    let stream = UnixStream::connect(&sock)
        .with_context(|| format!("connecting to {} (is the testnet up?)", sock.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut cmd = |c: String| -> Result<()> {
        writeln!(w, "{c}")?;
        let mut reply = String::new();
        r.read_line(&mut reply)?;
        if !reply.starts_with("250") {
            bail!(
                "{provider} answered {:?} to {}",
                reply.trim(),
                c.split(' ').next().unwrap_or("")
            );
        }
        Ok(())
    };
    // ADD_USER fails for an existing user: update instead.
    if cmd(format!("ADD_USER {user} {link}")).is_err() {
        cmd(format!("UPDATE_USER {user} {link}"))?;
    }
    if let Some(id) = identity {
        cmd(format!("SET_USER_IDENTITY {user} {id}"))?;
    }
    println!("registered {user}@{provider}");
    Ok(())
}
