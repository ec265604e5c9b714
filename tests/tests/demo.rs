//! The README's main command runs `metallb-demo`; this keeps it working. `--once` runs the whole
//! tour (stack up, configuration, a Service, its route, requests through the router; a layer 2
//! Service, the node answering ARP for it and a connection from the segment reaching that node;
//! grpcurl, the trace in Jaeger) and tears everything down instead of waiting for Ctrl-C.

use std::process::Command;

use metallb_tests::tools::our_binary;

#[test]
fn the_demo_tours_the_stack_and_cleans_up() {
    let logs = tempfile::tempdir().unwrap();
    let log_dir = logs.path().join("demo-logs");
    let output = Command::new(our_binary("metallb-demo"))
        .arg("--once")
        .arg("--log-dir")
        .arg(&log_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the demo failed:\n{stdout}\n{stderr}");
    for expected in [
        "default/hello got 203.0.113.0",
        "Event IPAllocated",
        "nexthop via 192.0.2.11",
        "nexthop via 192.0.2.12",
        "answered by node-",
        "default/hello-l2 got 192.0.2.200",
        "with protocol \"layer2\"",
        "Unicast reply from 192.0.2.200 [",
        "nexthop via 192.0.2.13",
        "\"pool\": \"demo\"",
        "\"pool\": \"segment\"",
        // The trace as a tree: the UPDATE under the allocator's span, under the watcher's.
        "metallb-watcher watcher.service (",
        "    metallb-announcer send_update (",
        "/api/traces/",
        "curl -s http://",
        "Every command above ran as printed.",
        "Stopped; everything is removed but the logs",
    ] {
        assert!(stdout.contains(expected), "the demo did not print {expected:?}:\n{stdout}");
    }
    // Layer 2: the node the allocator chose is the one answering ARP and the one a connection
    // from the segment reaches.
    let node_after = |prefix: &str| {
        let line = stdout.lines().find(|line| line.starts_with(prefix));
        let line = line.unwrap_or_else(|| panic!("no line {prefix:?}:\n{stdout}"));
        line[prefix.len()..].split(['"', ' ']).find(|word| !word.is_empty()).unwrap().to_string()
    };
    let assigned = node_after("Event nodeAssigned: announcing from node \"");
    let arp = node_after("ARP for 192.0.2.200 answered by ");
    let tcp = node_after("segment client -> 192.0.2.200:80: answered by ");
    assert!(["node-1", "node-2", "node-3"].contains(&assigned.as_str()), "{assigned:?}");
    assert_eq!((arp.as_str(), tcp.as_str()), (assigned.as_str(), assigned.as_str()), "{stdout}");
    // The logs stay where the demo said they would.
    assert!(stdout.contains(&format!("logs:     {}", log_dir.display())), "{stdout}");
    let kept: Vec<String> = std::fs::read_dir(&log_dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    for daemon in ["metallb-watcher", "metallb-allocator", "metallb-announcer"] {
        assert!(kept.iter().any(|name| name.starts_with(daemon)), "no {daemon} log in {kept:?}");
    }
}

#[test]
fn the_demo_rejects_unknown_arguments() {
    let output = Command::new(our_binary("metallb-demo")).arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--once"));
}
