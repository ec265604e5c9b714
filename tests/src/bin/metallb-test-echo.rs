//! A tiny TCP server and client for the end-to-end traffic checks, so that no test depends on
//! an interpreter being installed in the lab's namespaces.
//!
//! `metallb-test-echo serve ADDR NAME`: listens on ADDR, prints "listening on ADDR" once bound,
//! and answers every connection with NAME and a newline, then closes it.
//! `metallb-test-echo connect ADDR`: connects to ADDR and prints what the server sends; fails
//! after 5 s without an answer.
//! `metallb-test-echo until-not ADDR NAME LIMIT_MS`: connects again and again, each try cut off
//! after 100 ms, until a server other than NAME answers; prints that server's name and the
//! milliseconds it took; fails after LIMIT_MS. For failover: the first connection the new
//! owner of an IP answers.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::ExitCode,
    time::{Duration, Instant},
};

/// Bound on the client's connect and on its wait for the answer.
const TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", addr, name] => parse(addr).and_then(|addr| serve(addr, name)),
        ["connect", addr] => parse(addr).and_then(connect),
        ["until-not", addr, name, limit_ms] => parse(addr).and_then(|addr| {
            let limit = limit_ms.parse().map_err(|err| format!("{limit_ms:?}: {err}"))?;
            until_not(addr, name, Duration::from_millis(limit))
        }),
        _ => Err("usage: metallb-test-echo serve ADDR NAME | connect ADDR | until-not ADDR NAME LIMIT_MS"
            .to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("metallb-test-echo: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse(addr: &str) -> Result<SocketAddr, String> {
    addr.parse().map_err(|err| format!("{addr:?} is not an address such as 203.0.113.0:80: {err}"))
}

fn serve(addr: SocketAddr, name: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|err| format!("binding {addr}: {err}"))?;
    println!("listening on {addr}");
    // The harness waits for that line: it must not sit in a buffer.
    std::io::stdout().flush().map_err(|err| err.to_string())?;
    // A failed accept or a client that went away is the client's problem, not the server's.
    for mut stream in listener.incoming().flatten() {
        let _ = stream.write_all(format!("{name}\n").as_bytes());
    }
    Ok(())
}

fn connect(addr: SocketAddr) -> Result<(), String> {
    print!("{}", ask(addr, TIMEOUT)?);
    Ok(())
}

/// Bound on each try of `until-not`: a SYN sent to a node that is gone is lost, so a try must
/// give up soon and the next one go out once the client's neighbour entry has moved.
const TRY_TIMEOUT: Duration = Duration::from_millis(100);

fn until_not(addr: SocketAddr, name: &str, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::from("no try");
    while started.elapsed() < limit {
        match ask(addr, TRY_TIMEOUT) {
            Ok(answer) if answer.trim() != name => {
                println!("{} {}", answer.trim(), started.elapsed().as_millis());
                return Ok(());
            }
            Ok(answer) => last = format!("{} still answers", answer.trim()),
            Err(err) => last = err,
        }
    }
    Err(format!("no server but {name} answered on {addr} within {limit:?}; last: {last}"))
}

fn ask(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|err| format!("connecting to {addr}: {err}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|err| err.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|err| format!("reading from {addr}: {err}"))?;
    Ok(answer)
}
