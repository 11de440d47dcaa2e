//! Process-wide memory settings, applied once at start, before any other
//! thread runs: fewer malloc arenas, and no core dumps (a core file would
//! put the decrypted mail the daemon holds in memory on disk).

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

/// Keeps the process from dumping core: its memory holds decrypted mail
/// (the IMAP body cache, messages being sent or served) and keys, and a
/// core file, or a crash handler's copy of one, is plaintext on disk.
/// Non-dumpable also keeps other processes of the same user from attaching
/// a debugger. Returns whether both settings took.
pub fn no_core_dumps() -> bool {
    #[cfg(target_os = "linux")]
    {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads the struct it is given; prctl with
        // PR_SET_DUMPABLE takes integers only.
        unsafe {
            let limit = libc::setrlimit(libc::RLIMIT_CORE, &none) == 0;
            let dumpable = libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) == 0;
            limit && dumpable
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_process_no_longer_dumps_core() {
        assert!(no_core_dumps());
        let mut limit = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: getrlimit writes the struct it is given; prctl with
        // PR_GET_DUMPABLE takes no pointers.
        let dumpable = unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_CORE, &mut limit), 0);
            libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0)
        };
        assert_eq!((limit.rlim_cur, limit.rlim_max, dumpable), (0, 0, 0));
    }
}
