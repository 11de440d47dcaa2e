//! End-to-end blocks (§6). (in progress)
