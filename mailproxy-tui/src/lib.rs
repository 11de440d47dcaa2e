//! mailproxy-tui: a live terminal dashboard for mailproxyd.
//!
//! Elm-style: [`app::State`] holds everything shown, [`event::Msg`] is the one
//! input enum, [`update::update`] is the pure state machine returning
//! [`update::Command`]s, [`view`] renders a `State` into a ratatui frame, and
//! [`net`] is the runtime that talks to the daemon's management socket.

pub mod app;
pub mod event;
pub mod net;
pub mod update;
pub mod view;
