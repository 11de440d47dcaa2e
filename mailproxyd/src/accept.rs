//! The accept loop shared by the SMTP, POP3 and IMAP servers: one task per
//! connection, each with a [`Slot`] (or none when every slot is held by a
//! proven client), and an orderly stop.

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::slots::{Slot, Slots};

/// Accepts connections on `listener` until `shutdown` completes, running
/// `session(socket, slot, stop)` for each in its own task; `slot` is `None`
/// when the session must refuse the client (server busy). Then turns `stop`
/// true, so that open sessions say goodbye, and waits for them.
pub async fn serve_sessions<F, Fut>(
    listener: TcpListener,
    slots: Slots,
    shutdown: impl Future<Output = ()>,
    mut session: F,
) where
    F: FnMut(TcpStream, Option<Slot>, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((sock, _peer)) = accepted else { continue };
                let _ = sock.set_nodelay(true);
                let slot = slots.register();
                tasks.spawn(session(sock, slot, stop_rx.clone()));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
}
