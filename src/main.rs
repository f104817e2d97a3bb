//! The `telemetron` binary. The start-up sequence lives in [`telemetron::cli`] so that
//! binaries adding their own plugins can reuse it unchanged.

fn main() -> std::process::ExitCode {
    telemetron::cli::main()
}
