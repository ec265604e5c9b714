//! A tiny TCP server and client for the end-to-end traffic checks, so that no test depends on
//! an interpreter being installed in the lab's namespaces.
//!
//! `metallb-test-echo serve ADDR NAME`: listens on ADDR, prints "listening on ADDR" once bound,
//! and answers every connection with NAME and a newline, then closes it.
//! `metallb-test-echo connect ADDR`: connects to ADDR and prints what the server sends; fails
//! after 5 s without an answer.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::ExitCode,
    time::Duration,
};

/// Bound on the client's connect and on its wait for the answer.
const TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", addr, name] => parse(addr).and_then(|addr| serve(addr, name)),
        ["connect", addr] => parse(addr).and_then(connect),
        _ => Err("usage: metallb-test-echo serve ADDR NAME | connect ADDR".to_string()),
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
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|err| format!("connecting to {addr}: {err}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|err| err.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|err| format!("reading from {addr}: {err}"))?;
    print!("{answer}");
    Ok(())
}
