//! Sphinx packets (§2): creation, unwrap, SURBs.

pub mod commands;
