//! The `telemetron` binary. The start-up sequence lives in [`telemetron::cli`] so that
//! binaries adding their own plugins can reuse it unchanged.

/// mimalloc instead of the system allocator: each request allocates and frees a few small
/// buffers on one thread while workers free events on another, a pattern where glibc's
/// malloc showed up as about 7% of server CPU in profiles of the single-event load test.
#[global_allocator]
static ALLOCATOR: telemetron::allocator::Mimalloc = telemetron::allocator::Mimalloc;

fn main() -> std::process::ExitCode {
    telemetron::cli::main()
}
