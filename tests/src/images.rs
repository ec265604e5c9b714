//! The images a real node runs, built without a registry: metallb-rs's own by
//! `scripts/build-image.sh` (exactly what a user builds), the others (echo server, CoreDNS,
//! Jaeger) by `tests/scripts/build-test-images.sh`. Each is built at most once per test process.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
};

use anyhow::Context;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// An image as an OCI archive, and the reference it is imported under.
#[derive(Clone, Debug)]
pub struct ImageArchive {
    /// E.g. `localhost/metallb-rs:0.1.0-0123456789ab`.
    pub reference: String,
    /// The `.oci.tar` to import.
    pub archive: PathBuf,
}

/// The metallb-rs image of the current work tree.
pub fn metallb_image() -> anyhow::Result<ImageArchive> {
    static IMAGE: OnceLock<Result<ImageArchive, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let script = Path::new(REPO).join("scripts/build-image.sh");
            let images =
                run_image_script(Command::new(script)).map_err(|err| format!("{err:#}"))?;
            images.into_iter().next().ok_or_else(|| "build-image.sh printed no image".to_string())
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The test image `name` (`echo`, `coredns` or `jaeger`), built at most once per process
/// (tests of one binary run in parallel and ask for the same images).
pub fn test_image(name: &str) -> anyhow::Result<ImageArchive> {
    static BUILT: Mutex<BTreeMap<String, ImageArchive>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(image) = built.get(name) {
        return Ok(image.clone());
    }
    let mut command = Command::new(Path::new(REPO).join("tests/scripts/build-test-images.sh"));
    command.arg(name);
    let image = run_image_script(command)?
        .into_iter()
        .next()
        .with_context(|| format!("build-test-images.sh printed no image for {name}"))?;
    built.insert(name.to_string(), image.clone());
    Ok(image)
}

/// Runs a script that prints `reference archive` lines.
fn run_image_script(mut command: Command) -> anyhow::Result<Vec<ImageArchive>> {
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)?
        .lines()
        .map(|line| {
            let (reference, archive) =
                line.split_once(' ').with_context(|| format!("unexpected line {line:?}"))?;
            Ok(ImageArchive { reference: reference.to_string(), archive: archive.into() })
        })
        .collect()
}
