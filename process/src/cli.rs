//! Flags every binary has, and the exit-code policy for bad flags.
//!
//! Invalid flags exit with code 64 (EX_USAGE from sysexits.h) and one line on stderr, so that
//! an orchestrator's log shows exactly what is wrong instead of a usage screen.

use std::net::SocketAddr;

use clap::{Args, Parser, ValueEnum, error::ErrorKind};

/// Exit code for invalid command-line usage (sysexits.h EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, one line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Flags shared by the three binaries; `#[command(flatten)]` them into each one's `Args`.
#[derive(Args, Clone, Debug)]
pub struct CommonArgs {
    /// Log line format.
    #[arg(long, env = "METALLB_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Which events to log, as a tracing filter: a level ("info") or per-module directives
    /// ("info,metallb_allocator=debug").
    #[arg(long, env = "METALLB_LOG_FILTER", default_value = "info")]
    pub log_filter: String,

    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    #[arg(long, env = "METALLB_ADMIN_ADDR", default_value = "0.0.0.0:7472")]
    pub admin_addr: SocketAddr,

    /// Seconds to let in-flight work finish after SIGTERM before exiting anyway.
    #[arg(long, env = "METALLB_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,
}

/// Parses the process's arguments. `--help` and `--version` print and exit 0; anything
/// invalid prints one line and exits 64.
pub fn parse_args_or_exit<T: Parser>() -> T {
    parse_args_from(std::env::args_os()).unwrap_or_else(|message| usage_error(&message))
}

/// Parses `args` (the first being the program name). `Err` holds the one-line reason.
pub fn parse_args_from<T, I, A>(args: I) -> Result<T, String>
where
    T: Parser,
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    T::try_parse_from(args).map_err(|err| match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => err.exit(),
        _ => first_line(&err.to_string()),
    })
}

/// Prints `message` as the single line of a usage error and exits 64.
pub fn usage_error(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(EXIT_USAGE)
}

fn first_line(text: &str) -> String {
    text.lines().find(|line| !line.trim().is_empty()).unwrap_or(text).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    struct TestArgs {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn invalid_address_is_reported_in_one_line_naming_the_flag() {
        let err =
            parse_args_from::<TestArgs, _, _>(["prog", "--admin-addr", "nonsense"]).unwrap_err();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("--admin-addr"), "{err}");
        assert!(err.contains("nonsense"), "{err}");
    }

    #[test]
    fn unknown_flag_is_reported_in_one_line() {
        let err =
            parse_args_from::<TestArgs, _, _>(["prog", "--admin-addr", "127.0.0.1:1", "--bogus"])
                .unwrap_err();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("--bogus"), "{err}");
    }

    #[test]
    fn defaults_apply_when_only_required_flags_are_given() {
        let args = parse_args_from::<TestArgs, _, _>(["prog"]).unwrap();
        assert_eq!(args.common.log_format, LogFormat::Text);
        assert_eq!(args.common.log_filter, "info");
        assert_eq!(args.common.admin_addr.port(), 7472);
    }
}
