//! The image `scripts/build-image.sh` builds, read back from its OCI archive: tagged
//! `<crate version>-<commit>`, never `latest`; the three binaries in /usr/local/bin and nothing
//! but them, the libraries they link and the user database (no shell); run as 65532 with the
//! ports the manifests use; and the same layout as the Dockerfile's (user, ports, binary
//! directory), so the manifests run either image unchanged.

use std::{
    collections::BTreeSet,
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use metallb_tests::{images::metallb_image, manifests::repo_dir};
use serde_json::Value;

const BINARIES: [&str; 3] = ["metallb-allocator", "metallb-watcher", "metallb-announcer"];

/// The bytes of `entry` in the tar archive at `archive`.
fn archive_entry(archive: &Path, entry: &str) -> Vec<u8> {
    let output = Command::new("tar").arg("-xOf").arg(archive).arg(entry).output().unwrap();
    assert!(output.status.success(), "{entry}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

fn blob(archive: &Path, digest: &str) -> Vec<u8> {
    archive_entry(archive, &format!("blobs/{}", digest.replacen(':', "/", 1)))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The paths in a (gzip-compressed) layer.
fn layer_paths(layer: &[u8]) -> Vec<String> {
    let mut tar = Command::new("tar")
        .args(["-tzf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = tar.stdin.take().unwrap();
    let bytes = layer.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let output = tar.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|path| path.trim_start_matches("./").trim_end_matches('/').to_string())
        .filter(|path| !path.is_empty())
        .collect()
}

/// The Dockerfile's final stage: its USER, EXPOSEd ports and the directory the binaries go to.
fn dockerfile_layout() -> (String, BTreeSet<String>, String) {
    let text = std::fs::read_to_string(repo_dir().join("Dockerfile")).unwrap();
    let final_stage = text.rsplit("\nFROM ").next().unwrap();
    let value = |instruction: &str| {
        final_stage
            .lines()
            .find_map(|line| line.strip_prefix(instruction))
            .unwrap_or_else(|| panic!("no {instruction} in the Dockerfile's final stage"))
            .trim()
            .to_string()
    };
    let ports = value("EXPOSE ").split_whitespace().map(|port| format!("{port}/tcp")).collect();
    let copy_destination = value("COPY ").split_whitespace().last().unwrap().to_string();
    (value("USER "), ports, copy_destination.trim_end_matches('/').to_string())
}

#[test]
fn the_image_holds_the_three_binaries_and_their_libraries_only_and_matches_the_dockerfile() {
    let image = metallb_image().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let tag = image.reference.strip_prefix("localhost/metallb-rs:").unwrap();
    let commit = tag.strip_prefix(&format!("{version}-")).unwrap().trim_end_matches("-dirty");
    assert!(
        commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "tag {tag} is not <version>-<commit>"
    );

    let archive = &image.archive;
    let index = json(&archive_entry(archive, "index.json"));
    let manifest_descriptor = &index["manifests"][0];
    assert_eq!(
        manifest_descriptor["annotations"]["org.opencontainers.image.ref.name"],
        image.reference.as_str()
    );
    let manifest = json(&blob(archive, manifest_descriptor["digest"].as_str().unwrap()));
    let config = json(&blob(archive, manifest["config"]["digest"].as_str().unwrap()));

    let (user, ports, binary_dir) = dockerfile_layout();
    assert_eq!(config["config"]["User"], user.as_str());
    let exposed: BTreeSet<String> =
        config["config"]["ExposedPorts"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(exposed, ports);
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.version"], version, "{config}");

    let mut paths = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        paths.extend(layer_paths(&blob(archive, layer["digest"].as_str().unwrap())));
    }
    for binary in BINARIES {
        let path = format!("{}/{binary}", binary_dir.trim_start_matches('/'));
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
    let unexpected: Vec<&String> = paths
        .iter()
        .filter(|path| {
            let allowed_file = path.starts_with("usr/local/bin/metallb-")
                || path.starts_with("lib/")
                || path.starts_with("lib64/")
                || *path == "etc/passwd"
                || *path == "etc/group";
            let parent_directory = ["usr", "usr/local", "usr/local/bin", "etc", "lib", "lib64"]
                .contains(&path.as_str());
            !allowed_file && !parent_directory
        })
        .collect();
    assert!(unexpected.is_empty(), "the image holds more than it needs: {unexpected:?}");
    assert!(!paths.iter().any(|path| path.ends_with("bin/sh")), "a shell in the image");
}
