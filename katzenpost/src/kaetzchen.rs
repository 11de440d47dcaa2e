//! Kaetzchen (§7). (in progress)
