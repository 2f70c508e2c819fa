//! Signalling a whole process group: the one libc call std does not wrap.
//!
//! The ringer and the command handler start their programs in a process
//! group of their own (`CommandExt::process_group(0)`, so the group id is the
//! child's pid) and stop them with [`group`], so a shell's pipelines,
//! loops and background jobs stop with it. Only signal a group while its
//! leader has not been reaped: until then its pid, and so the group id,
//! cannot have been reused.

/// SIGKILL: stop now, no clean-up.
pub const SIGKILL: i32 = 9;
/// SIGTERM: please stop.
pub const SIGTERM: i32 = 15;

unsafe extern "C" {
    /// POSIX `kill(2)`. Any arguments are memory-safe; a negative pid
    /// addresses a process group.
    safe fn kill(pid: i32, sig: i32) -> i32;
}

/// Sends `sig` to the process group `group`; errors (the group is already
/// gone) are ignored.
pub fn group(group: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(group)
        && pid > 0
    {
        let _ = kill(-pid, sig);
    }
}
