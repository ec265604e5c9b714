//! The README's main command runs `metallb-demo`; this keeps it working. `--once` runs the whole
//! tour (stack up, configuration, a Service, its route, requests through the router, grpcurl,
//! the trace in Jaeger) and tears everything down instead of waiting for Ctrl-C.

use std::process::Command;

use metallb_tests::tools::our_binary;

#[test]
fn the_demo_tours_the_stack_and_cleans_up() {
    let output = Command::new(our_binary("metallb-demo")).arg("--once").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the demo failed:\n{stdout}\n{stderr}");
    for expected in [
        "default/hello got 203.0.113.0",
        "Event IPAllocated",
        "nexthop via 192.0.2.11",
        "nexthop via 192.0.2.12",
        "answered by node-",
        "\"pool\": \"demo\"",
        "metallb-announcer/send_update",
        "/trace/",
        "Every grpcurl line above ran as printed.",
        "Stopped; everything is removed.",
    ] {
        assert!(stdout.contains(expected), "the demo did not print {expected:?}:\n{stdout}");
    }
}

#[test]
fn the_demo_rejects_unknown_arguments() {
    let output = Command::new(our_binary("metallb-demo")).arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--once"));
}
