//! A shorter scheduler time slice for threads that should get a core soon after waking: the
//! reader thread, and the batch workers when they cannot be given a higher priority.
//!
//! Since Linux 6.12 the fair scheduler (EEVDF) takes a thread's requested slice from
//! `sched_setattr`'s `sched_runtime`, clamped to 0.1-100 ms. A shorter slice gives the thread
//! an earlier virtual deadline, so it gets a core sooner after it wakes. Its share of CPU time
//! stays the one its nice value gives, so such a thread cannot take more than that from the
//! others, as a real-time policy could. An unprivileged thread may set it (checked as
//! user `nobody` on Linux 6.18, where the default slice read back as 1.4 ms).

use std::io;
use std::time::Duration;

/// The shortest slice the fair scheduler accepts.
pub const SHORTEST: Duration = Duration::from_micros(100);

/// Sets the calling thread's time slice, keeping its policy and nice value.
///
/// # Errors
/// Returns the OS error of `sched_getattr` or `sched_setattr`, or
/// [`io::ErrorKind::Unsupported`] when the thread runs under a real-time or deadline policy,
/// where the field means something else.
#[cfg(target_os = "linux")]
pub fn set_current_thread_slice(slice: Duration) -> io::Result<()> {
    let mut attr = current_attr()?;
    if attr.sched_policy != libc::SCHED_OTHER as u32
        && attr.sched_policy != libc::SCHED_BATCH as u32
    {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "time slices apply to the fair scheduler, and this thread runs under policy {}",
                attr.sched_policy
            ),
        ));
    }

    attr.sched_flags = 0;
    attr.sched_runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: `attr` is a valid `sched_attr` whose `size` field contains its size, and pid 0 is the
    // calling thread.
    let result = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            &attr as *const libc::sched_attr,
            0,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Leaves the scheduler's default slice in place on systems other than Linux.
///
/// # Errors
/// Always returns [`io::ErrorKind::Unsupported`].
#[cfg(not(target_os = "linux"))]
pub fn set_current_thread_slice(_slice: Duration) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "thread time slices are set on Linux only",
    ))
}

/// Reads the calling thread's scheduling attributes.
#[cfg(target_os = "linux")]
fn current_attr() -> io::Result<libc::sched_attr> {
    let size = std::mem::size_of::<libc::sched_attr>();
    // SAFETY: sched_attr is plain integers, for which all zeros is a valid value.
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    attr.size = u32::try_from(size).expect("sched_attr is 48 bytes");
    // SAFETY: the kernel writes at most `size` bytes into `attr`, and pid 0 is the calling thread.
    let result = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut libc::sched_attr,
            size,
            0,
        )
    };
    if result == 0 {
        Ok(attr)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn slice_changes_only_this_thread() {
        let before = current_attr().expect("sched_getattr works on the test thread");
        let after = std::thread::spawn(|| {
            set_current_thread_slice(SHORTEST)
                .expect("a thread may shorten its own slice");
            current_attr().expect("sched_getattr works on the spawned thread")
        })
        .join()
        .expect("the thread returns its attributes");

        // Needs a kernel with custom slices (6.12 or later), as the CI machine has.
        assert_eq!(after.sched_runtime, 100_000, "the slice in nanoseconds");
        assert_eq!(
            after.sched_policy, before.sched_policy,
            "the policy is kept"
        );
        assert_eq!(
            after.sched_nice, before.sched_nice,
            "the nice value is kept"
        );
        assert_eq!(
            current_attr().expect("sched_getattr").sched_runtime,
            before.sched_runtime,
            "the caller keeps its slice"
        );
    }
}
