//! Process-wide memory settings, applied once at start, before any other
//! thread runs.

/// Most glibc malloc arenas. glibc gives threads that allocate at the same
/// time arenas of their own, up to eight per core, and an arena keeps what
/// was freed in it for its own reuse: after an IMAP client's FETCH rounds,
/// the blocking threads that read and decrypt messages had left the server
/// at about twice the resident memory it has with two arenas
/// (`scripts/bench-imap` prints it).
const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`], unless the environment
/// sets `MALLOC_ARENA_MAX` itself. Elsewhere than glibc, nothing.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only tunes the allocator; it takes no pointers.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}
