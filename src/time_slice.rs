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

/// The minimum slice the fair scheduler accepts.
pub const MIN_SLICE: Duration = Duration::from_micros(100);

/// The maximum slice the fair scheduler accepts.
const MAX_SLICE: Duration = Duration::from_millis(100);

/// Sets the calling thread's time slice, clamped to 0.1-100 ms as the kernel does. The
/// policy, the nice value and the reset-on-fork flag stay as they are, and threads that this
/// thread creates later inherit the slice.
///
/// # Errors
/// Returns the OS error of `sched_getattr` or `sched_setattr`. Returns
/// [`io::ErrorKind::Unsupported`] when the thread runs under a policy other than `SCHED_OTHER`
/// or `SCHED_BATCH`, or when the kernel accepted the call but kept another slice, as kernels
/// without custom slices do.
#[cfg(target_os = "linux")]
pub fn set_current_thread_slice(slice: Duration) -> io::Result<()> {
    let mut attr = current_attr()?;
    if attr.sched_policy != libc::SCHED_OTHER as u32
        && attr.sched_policy != libc::SCHED_BATCH as u32
    {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "time slices apply to SCHED_OTHER and SCHED_BATCH, and this thread runs under policy {}",
                attr.sched_policy
            ),
        ));
    }

    // The other flags (utilisation clamps, deadline options) need fields or policies that this
    // call does not set.
    attr.sched_flags &= libc::SCHED_FLAG_RESET_ON_FORK as u64;
    let requested = u64::try_from(slice.clamp(MIN_SLICE, MAX_SLICE).as_nanos())
        .expect("100 ms in nanoseconds fits in u64");
    attr.sched_runtime = requested;
    // SAFETY: `attr` is a valid `sched_attr` whose `size` field contains its size, and pid 0 is
    // the calling thread.
    let result = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            &attr as *const libc::sched_attr,
            0,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }

    let reported = current_attr()?.sched_runtime;
    if reported != requested {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "the kernel reports a time slice of {reported} ns instead of {requested} ns; \
                 custom slices need Linux 6.12 or later"
            ),
        ));
    }
    Ok(())
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
    fn slice_keeps_policy_and_nice_value() {
        let caller_slice = current_attr()
            .expect("sched_getattr works on the test thread")
            .sched_runtime;
        let after = std::thread::spawn(|| {
            // Values other than the defaults, so that a call which reset them would fail here.
            // Lowering a thread's own priority needs no privilege.
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: `param` is a valid sched_param, and pid 0 is the calling thread.
            let batch = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
            assert_eq!(batch, 0, "SCHED_BATCH: {}", io::Error::last_os_error());
            // SAFETY: gettid has no preconditions.
            let thread_id = unsafe { libc::gettid() } as libc::id_t;
            // SAFETY: setpriority only reads its integer arguments.
            let nice = unsafe { libc::setpriority(libc::PRIO_PROCESS, thread_id, 7) };
            assert_eq!(nice, 0, "nice 7: {}", io::Error::last_os_error());

            set_current_thread_slice(MIN_SLICE).expect("a thread may shorten its own slice");
            current_attr().expect("sched_getattr works on the spawned thread")
        })
        .join()
        .expect("the thread returns its attributes");

        // Needs a kernel with custom slices (6.12 or later), as the CI machine has.
        assert_eq!(after.sched_runtime, 100_000, "the slice in nanoseconds");
        assert_eq!(
            after.sched_policy,
            libc::SCHED_BATCH as u32,
            "the policy is kept"
        );
        assert_eq!(after.sched_nice, 7, "the nice value is kept");
        assert_eq!(
            current_attr().expect("sched_getattr").sched_runtime,
            caller_slice,
            "the caller keeps its slice"
        );
    }

    #[test]
    fn slice_is_clamped_to_the_kernel_range() {
        let slices = std::thread::spawn(|| {
            set_current_thread_slice(Duration::from_nanos(1)).expect("a short slice is clamped");
            let shortest = current_attr().expect("sched_getattr").sched_runtime;
            set_current_thread_slice(Duration::from_secs(1)).expect("a long slice is clamped");
            let longest = current_attr().expect("sched_getattr").sched_runtime;
            (shortest, longest)
        })
        .join()
        .expect("the thread returns its slices");

        assert_eq!(slices.0, 100_000, "clamped up to 0.1 ms");
        assert_eq!(slices.1, 100_000_000, "clamped down to 100 ms");
    }
}
