//! Logging with `tracing`, to stdout or a 0600 file, in one vocabulary of
//! levels used everywhere (the config's `Level`, `mailproxyctl logs --level`,
//! the TUI's filter, `EVENTS <level>`): `ERROR`, `WARN`, `INFO`, `DEBUG`,
//! `TRACE`, each showing itself and everything more severe.
//!
//! For 2019 configs the original's words are accepted too: `WARNING` is
//! `WARN` and `NOTICE` (the original's default) is `INFO`. The original's
//! `INFO` and `DEBUG` meant one step more than they do here; such a config
//! now logs a little less, never more.
//!
//! Only mailproxyd's own crates log below `INFO`: dependencies (mio, hyper,
//! rustls...) are held at `INFO` and above whatever the level, so that
//! `DEBUG` and `TRACE` show the daemon's own detail rather than I/O polling.
//! Colours are used only when the output is a terminal.
//!
//! Nothing in mailproxyd logs message contents or private keys at any level.
//!
//! Besides the log output, every record goes to the [`LogBus`] (when someone
//! listens at its level), which management clients read with `EVENTS`.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use mailproxy_proto::Level;
use tracing::level_filters::LevelFilter;

use crate::config::LoggingConfig;

mod bus;

pub use bus::{bus, BusLayer, LogBus, LogSubscription};

/// The level words the config accepts, for its error message.
pub const CONFIG_LEVELS: &str =
    "ERROR, WARN, INFO, DEBUG, TRACE (or the original's WARNING, NOTICE)";

/// Parses the config's `Level` (case-insensitive; `OFF` is `Disable`'s job).
pub fn parse_config_level(word: &str) -> Option<Level> {
    Level::parse(word).filter(|l| *l != Level::Off)
}

/// The crates whose records pass below [`DEPENDENCY_LEVEL`].
const OWN_TARGETS: [&str; 3] = ["mailproxyd", "katzenpost", "mailproxy_proto"];

/// The most verbose level a dependency's records are shown at.
pub const DEPENDENCY_LEVEL: Level = Level::Info;

/// Whether `target` (a module path) is one of mailproxy's own crates.
pub fn is_own_target(target: &str) -> bool {
    OWN_TARGETS.iter().any(|own| {
        target
            .strip_prefix(own)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// Whether a record at `level` from `target` passes the dependency cap.
pub fn passes_dependency_cap(target: &str, level: Level) -> bool {
    level <= DEPENDENCY_LEVEL || is_own_target(target)
}

/// The `tracing` filter for a level.
pub fn level_filter(level: Level) -> LevelFilter {
    match level {
        Level::Off => LevelFilter::OFF,
        Level::Error => LevelFilter::ERROR,
        Level::Warn => LevelFilter::WARN,
        Level::Info => LevelFilter::INFO,
        Level::Debug => LevelFilter::DEBUG,
        Level::Trace => LevelFilter::TRACE,
    }
}

/// The output filter: `level` for mailproxy's own crates, at most
/// [`DEPENDENCY_LEVEL`] for the others.
fn output_filter(level: Level) -> tracing_subscriber::filter::Targets {
    let mut targets = tracing_subscriber::filter::Targets::new()
        .with_default(level_filter(level.min(DEPENDENCY_LEVEL)));
    for own in OWN_TARGETS {
        targets = targets.with_target(own, level_filter(level));
    }
    targets
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The log file could not be opened.
    #[error("cannot open log file '{path}': {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Installs the global subscriber for the daemon: the log output (unless
/// disabled) and the [`LogBus`] feeding `EVENTS` subscribers (always). Does
/// nothing if a subscriber is already installed (as in tests).
pub fn init(config: &LoggingConfig) -> Result<(), LoggingError> {
    init_with(config, false)
}

/// As [`init`]; with `stderr`, logs that would go to stdout go to stderr
/// (for commands whose stdout is their output, such as `mailproxyd -g`).
pub fn init_with(config: &LoggingConfig, stderr: bool) -> Result<(), LoggingError> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer as _;

    let output = if config.disable {
        None
    } else {
        let layer = tracing_subscriber::fmt::layer().with_target(true);
        let layer = match &config.file {
            None if stderr => layer
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(BoxMakeWriter::new(std::io::stderr)),
            None => layer
                .with_ansi(std::io::stdout().is_terminal())
                .with_writer(BoxMakeWriter::new(std::io::stdout)),
            Some(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|source| LoggingError::File {
                        path: path.clone(),
                        source,
                    })?;
                layer
                    .with_ansi(false)
                    .with_writer(BoxMakeWriter::new(Mutex::new(file)))
            }
        };
        Some(layer.with_filter(output_filter(config.level)))
    };
    // An already installed subscriber is fine (library use, tests).
    let _ = tracing_subscriber::registry()
        .with(output)
        .with(bus().layer())
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_vocabulary_with_the_original_words_accepted() {
        assert_eq!(parse_config_level("notice"), Some(Level::Info));
        assert_eq!(parse_config_level("INFO"), Some(Level::Info));
        assert_eq!(parse_config_level("Warning"), Some(Level::Warn));
        assert_eq!(parse_config_level("warn"), Some(Level::Warn));
        assert_eq!(parse_config_level("DEBUG"), Some(Level::Debug));
        assert_eq!(parse_config_level("trace"), Some(Level::Trace));
        assert_eq!(parse_config_level("verbose"), None);
        assert_eq!(parse_config_level("off"), None, "that is Disable");
        assert_eq!(level_filter(Level::Info), LevelFilter::INFO);
        assert_eq!(level_filter(Level::Trace), LevelFilter::TRACE);
    }

    #[test]
    fn dependencies_are_held_at_info() {
        assert!(is_own_target("mailproxyd"));
        assert!(is_own_target("mailproxyd::engine::worker"));
        assert!(is_own_target("katzenpost::wire"));
        assert!(!is_own_target("mio::poll"));
        assert!(!is_own_target("mailproxyd_extra"));
        assert!(passes_dependency_cap("mio::poll", Level::Info));
        assert!(!passes_dependency_cap("mio::poll", Level::Trace));
        assert!(!passes_dependency_cap("hyper::proto", Level::Debug));
        assert!(passes_dependency_cap("mailproxyd::pop3", Level::Trace));
        let f = output_filter(Level::Trace);
        assert!(f.would_enable("mailproxyd::pop3", &tracing::Level::TRACE));
        assert!(!f.would_enable("mio::poll", &tracing::Level::TRACE));
        assert!(f.would_enable("mio::poll", &tracing::Level::INFO));
        let f = output_filter(Level::Warn);
        assert!(!f.would_enable("mailproxyd::pop3", &tracing::Level::INFO));
        assert!(!f.would_enable("hyper", &tracing::Level::INFO));
    }
}
