//! Compiles the metallb.v1 contract and writes the file descriptor set that server reflection
//! serves, so `grpcurl describe` shows the documentation written in the .proto files.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "metallb/v1/common.proto",
    "metallb/v1/config.proto",
    "metallb/v1/service.proto",
    "metallb/v1/node.proto",
    "metallb/v1/announce.proto",
    "metallb/v1/allocator.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    // A protoc from the crate registry keeps `cargo build` independent of what the machine has;
    // an explicit PROTOC still wins, for platforms the vendored crate does not cover.
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    config.protoc_executable(protoc);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Written by hand so that a sender can send content it encoded itself
        // (src/update_wire.rs); the wire format is the .proto's.
        .extern_path(".metallb.v1.AssignmentUpdate", "crate::update_wire::AssignmentUpdate")
        .file_descriptor_set_path(out_dir.join("metallb_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["."])?;
    println!("cargo:rerun-if-env-changed=PROTOC");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
