//! mailproxy-tui: a live dashboard for a running mailproxyd.

use std::io::{self, Stdout};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use clap::Parser;
use mailproxy_proto::{locate, Level};
use mailproxy_tui::app::State;
use mailproxy_tui::event::Msg;
use mailproxy_tui::net::{self, NetConfig};
use mailproxy_tui::update::{update, Command};
use mailproxy_tui::view;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{MoveTo, Show};
use ratatui::crossterm::event::{
    self as term_event, DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste,
    EnableMouseCapture, Event,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;
use tokio::sync::mpsc::{self, UnboundedSender};

const AFTER_HELP: &str = "\
The socket is found with --socket, or else read from mailproxyd's config file
(--config or $MAILPROXYD_CONFIG; else ./katzenpost.toml if it exists, else
~/.config/mailproxy/mailproxyd.toml, which scripts/demo points at its config):
[Management] Path, by default <DataDir>/management_sock. The daemon must have [Management] Enable = true.

Press ? in the dashboard for the keys.";

#[derive(Debug, Parser)]
#[command(
    name = "mailproxy-tui",
    version,
    about = "Live dashboard for mailproxyd: accounts, recipients, queue, received mail, log",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Management socket of the daemon.
    #[arg(
        long,
        short = 's',
        value_name = "PATH",
        env = "MAILPROXYD_SOCKET",
        conflicts_with = "config"
    )]
    socket: Option<PathBuf>,

    /// mailproxyd config file to read the socket path from.
    #[arg(long, short = 'c', value_name = "FILE", env = "MAILPROXYD_CONFIG")]
    config: Option<PathBuf>,

    /// Log level to show: off (events only), error, warn, info, debug, trace.
    #[arg(long, short = 'l', default_value = "info", value_parser = parse_level)]
    level: Level,

    /// Capture the mouse (a click focuses a pane, the wheel scrolls it).
    #[arg(long)]
    mouse: bool,
}

fn parse_level(text: &str) -> Result<Level, String> {
    Level::parse(text)
        .ok_or_else(|| format!("unknown level '{text}' (off, error, warn, info, debug or trace)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailproxy-tui: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The socket path: `--socket`, or from the config file (as mailproxyctl).
fn socket_path(cli: &Cli) -> anyhow::Result<PathBuf> {
    if let Some(path) = &cli.socket {
        return Ok(path.clone());
    }
    let config = cli.config.clone().unwrap_or_else(locate::default_config);
    let loc = locate::from_config_file(&config)
        .map_err(|e| anyhow!("{e} (use --socket PATH or --config FILE to find the daemon)"))?;
    if !loc.enabled {
        eprintln!(
            "mailproxy-tui: warning: [Management] Enable is not true in {}",
            config.display()
        );
    }
    Ok(loc.path)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let socket = socket_path(&cli)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // The level shown must admit something; `off` shows events only.
    let level = cli.level;
    let mut terminal = TerminalGuard::enter(cli.mouse).context("setting up the terminal")?;
    runtime.block_on(event_loop(&mut terminal.terminal, socket, level))
}

/// Restores the terminal: leave the alternate screen, raw mode, mouse capture.
/// The alternate screen is cleared first: a terminal resized meanwhile (tmux)
/// may otherwise carry dashboard lines over into the normal screen.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableMouseCapture,
        DisableBracketedPaste,
        Clear(ClearType::All),
        MoveTo(0, 0),
        LeaveAlternateScreen,
        Show
    );
}

/// Owns the terminal in raw mode; restores it on drop, and on panic through
/// the panic hook (before the panic message is printed).
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    fn enter(mouse: bool) -> anyhow::Result<TerminalGuard> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        enable_raw_mode()?;
        let setup = || -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
            execute!(io::stdout(), EnterAlternateScreen, EnableBracketedPaste)?;
            if mouse {
                execute!(io::stdout(), EnableMouseCapture)?;
            }
            Terminal::new(CrosstermBackend::new(io::stdout()))
        };
        match setup() {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore_terminal();
                Err(e.into())
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Reads terminal input on a thread (crossterm's reads block) until `stop`.
fn spawn_input(tx: UnboundedSender<Msg>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match term_event::poll(Duration::from_millis(100)) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => {
                    let _ = tx.send(Msg::Quit);
                    return;
                }
            }
            let msg = match term_event::read() {
                Ok(Event::Key(key)) => Msg::Key(key),
                Ok(Event::Mouse(mouse)) => Msg::Mouse(mouse),
                Ok(Event::Resize(w, h)) => Msg::Resize(w, h),
                Ok(Event::Paste(text)) => Msg::Paste(text),
                Ok(_) => continue,
                // The terminal is gone: nobody can press q any more.
                Err(_) => Msg::Quit,
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
}

async fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    socket: PathBuf,
    level: Level,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    spawn_input(tx.clone(), stop.clone());
    let (commands, net_task) = net::spawn(NetConfig::new(socket, level), tx.clone());
    let ticker = tokio::spawn({
        let tx = tx.clone();
        async move {
            let mut interval = tokio::time::interval(Duration::from_millis(500));
            loop {
                interval.tick().await;
                if tx.send(Msg::Tick { now_ms: now_ms() }).is_err() {
                    return;
                }
            }
        }
    });
    let signals = tokio::spawn(quit_on_signals(tx.clone()));
    drop(tx);

    let mut state = State::new(now_ms(), level);
    if let Ok(size) = terminal.size() {
        state.size = (size.width, size.height);
    }
    let result: anyhow::Result<()> = async {
        loop {
            terminal.draw(|frame| view::draw(frame, &state))?;
            let Some(first) = rx.recv().await else {
                return Ok(());
            };
            // Apply everything pending before drawing again.
            let mut pending = vec![first];
            while let Ok(msg) = rx.try_recv() {
                pending.push(msg);
                if pending.len() >= 256 {
                    break;
                }
            }
            for msg in pending {
                for command in update(&mut state, msg) {
                    if command == Command::Quit {
                        return Ok(());
                    }
                    // The runtime only stops when we do.
                    let _ = commands.send(command);
                }
            }
        }
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    net_task.abort();
    ticker.abort();
    signals.abort();
    result
}

/// Sends [`Msg::Quit`] on SIGTERM or SIGHUP, so the terminal is restored.
async fn quit_on_signals(tx: UnboundedSender<Msg>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    let _ = tx.send(Msg::Quit);
}
