//! `EVENTS <level>`: the connection becomes a one-way stream of
//! `EVENT`, `LOG` and `LAGGED` lines (see `mailproxy_proto::event`).
//!
//! Both buses are subscribed before the `250` goes out, so nothing emitted
//! after the reply is missed. The stream ends when the client sends `QUIT`
//! or closes, or the daemon shuts down. While this task waits on a client
//! that does not read, the buses keep going and drop its oldest lines; it is
//! told how many with `LAGGED n` once it reads again. Nothing else waits on it.

use mailproxy_proto::{parse_frame, Level, ParseError, Request, Status, StreamLine, MAX_LINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::broadcast::error::RecvError;

use super::MgmtContext;

/// Whether the client's input so far holds a `QUIT` line; consumes complete
/// lines and keeps at most one partial line (other requests are ignored:
/// after `EVENTS` only `QUIT` means something).
fn quit_requested(buf: &mut Vec<u8>) -> bool {
    loop {
        match parse_frame(buf) {
            (_, Err(ParseError::Incomplete)) => return false,
            (0, Err(_)) => {
                // Over-long partial line: drop it.
                buf.clear();
                return false;
            }
            (used, parsed) => {
                buf.drain(..used);
                if matches!(parsed, Ok(Request::Quit)) {
                    return true;
                }
            }
        }
    }
}

/// Serves an `EVENTS` subscription on `stream` until it ends. `pending` is
/// client input already read after the `EVENTS` line.
pub(super) async fn run(stream: UnixStream, mut pending: Vec<u8>, level: Level, ctx: &MgmtContext) {
    let mut events = ctx.control.subscribe();
    let mut logs = (level != Level::Off).then(|| ctx.logs.subscribe(level));
    let (mut read, mut write) = stream.into_split();
    let ok = Status::ok_with(format!(
        "streaming events and log lines at {level} until QUIT"
    ));
    if write.write_all(ok.to_string().as_bytes()).await.is_err() {
        return;
    }
    tracing::debug!(%level, "management: event subscriber");
    if quit_requested(&mut pending) {
        let _ = write.shutdown().await;
        return;
    }
    let mut chunk = [0u8; 512];
    loop {
        let line = tokio::select! {
            _ = ctx.shutdown.wait() => break,
            r = read.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    pending.extend_from_slice(&chunk[..n]);
                    if pending.len() > MAX_LINE * 4 {
                        pending.clear();
                    }
                    if quit_requested(&mut pending) {
                        break;
                    }
                    continue;
                }
            },
            e = events.recv() => match e {
                Ok(event) => StreamLine::Event(event),
                Err(RecvError::Lagged(n)) => StreamLine::Lagged { dropped: n },
                Err(RecvError::Closed) => break,
            },
            l = async {
                match logs.as_mut() {
                    Some(l) => l.recv().await,
                    None => std::future::pending().await,
                }
            } => match l {
                Ok(log) => StreamLine::Log(log),
                Err(RecvError::Lagged(n)) => StreamLine::Lagged { dropped: n },
                Err(RecvError::Closed) => break,
            },
        };
        let mut text = line.to_line();
        text.push_str("\r\n");
        tokio::select! {
            _ = ctx.shutdown.wait() => break,
            w = write.write_all(text.as_bytes()) => if w.is_err() { return },
        }
    }
    let _ = write.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_quit_ends_the_stream() {
        let mut buf = b"STATUS\r\nFROB\n\xff\nQUI".to_vec();
        assert!(!quit_requested(&mut buf));
        assert_eq!(buf, b"QUI");
        buf.extend_from_slice(b"T\r\n");
        assert!(quit_requested(&mut buf));
        let mut long = vec![b'A'; MAX_LINE + 10];
        assert!(!quit_requested(&mut long));
        assert!(long.is_empty());
    }
}
