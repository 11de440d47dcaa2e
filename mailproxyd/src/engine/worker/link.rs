//! What a provider session needs of its link: send one command, receive
//! one within a time limit. The real link is a wire session; unit tests
//! drive the worker over a fake one.

use std::future::Future;
use std::time::Duration;

use katzenpost::wire::commands::Command;

use katzenpost::wire::session::Session;
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::EngineError;

/// A link to the provider.
pub(in crate::engine) trait ProviderLink: Send {
    /// Sends one command.
    fn send(&mut self, cmd: &Command) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Receives one command, within `timeout`.
    fn recv(
        &mut self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Command, EngineError>> + Send;
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> ProviderLink for Session<S> {
    fn send(&mut self, cmd: &Command) -> impl Future<Output = Result<(), EngineError>> + Send {
        let bytes = cmd.encode();
        async move { Ok(Session::send(self, &bytes).await?) }
    }

    async fn recv(&mut self, timeout: Duration) -> Result<Command, EngineError> {
        let bytes = tokio::time::timeout(timeout, Session::recv(self))
            .await
            .map_err(|_| EngineError::Timeout("reply"))??;
        Ok(Command::decode(&bytes)?)
    }
}
