//! Path selection (§2.10). (in progress)
