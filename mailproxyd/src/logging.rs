//! Logging: the original's five levels mapped onto `tracing`, to stdout or a 0600 file.
//!
//! | config level | shows tracing levels |
//! |---|---|
//! | `ERROR` | error |
//! | `WARNING` | error, warn |
//! | `NOTICE` (default) | error, warn, info |
//! | `INFO` | error, warn, info, debug |
//! | `DEBUG` | everything, trace included |
//!
//! Nothing in mailproxyd logs message contents or private keys at any level.
//!
//! Besides the log output, every record goes to the [`LogBus`] (when someone
//! listens at its level), which management clients read with `EVENTS`.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;

use crate::config::LoggingConfig;

mod bus;

pub use bus::{bus, BusLayer, LogBus, LogSubscription};

/// A configured log level (the original daemon's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warning,
    /// Normal operation (default).
    Notice,
    /// Details.
    Info,
    /// Everything.
    Debug,
}

impl LogLevel {
    /// The `tracing` filter for this level.
    pub fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warning => LevelFilter::WARN,
            LogLevel::Notice => LevelFilter::INFO,
            LogLevel::Info => LevelFilter::DEBUG,
            LogLevel::Debug => LevelFilter::TRACE,
        }
    }
}

impl FromStr for LogLevel {
    type Err = ();

    /// Case-insensitive; `WARN` is accepted for `WARNING`.
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "ERROR" => LogLevel::Error,
            "WARNING" | "WARN" => LogLevel::Warning,
            "NOTICE" => LogLevel::Notice,
            "INFO" => LogLevel::Info,
            "DEBUG" => LogLevel::Debug,
            _ => return Err(()),
        })
    }
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
            None if stderr => layer.with_writer(BoxMakeWriter::new(std::io::stderr)),
            None => layer.with_writer(BoxMakeWriter::new(std::io::stdout)),
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
        Some(layer.with_filter(config.level.filter()))
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
    fn levels_parse_case_insensitively_and_map() {
        assert_eq!("notice".parse(), Ok(LogLevel::Notice));
        assert_eq!("Warning".parse(), Ok(LogLevel::Warning));
        assert_eq!("DEBUG".parse(), Ok(LogLevel::Debug));
        assert_eq!("verbose".parse::<LogLevel>(), Err(()));
        assert_eq!(LogLevel::Notice.filter(), LevelFilter::INFO);
        assert_eq!(LogLevel::Error.filter(), LevelFilter::ERROR);
        assert_eq!(LogLevel::Debug.filter(), LevelFilter::TRACE);
    }
}
